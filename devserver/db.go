package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	enumspb "go.temporal.io/api/enums/v1"
	serverconfig "go.temporal.io/server/common/config"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// prepareDatabase returns the SQL store config for file (in memory when empty), creating the
// schema if the file is new and registering the namespaces that do not exist yet.
//
// The sqlite plugin keeps one pooled connection per DSN for the life of the process, so the
// schema and namespace setup below and the server itself all share one connection.
func prepareDatabase(file string, pragmas map[string]string, namespaces []string, searchAttrs map[string]enumspb.IndexedValueType) (*serverconfig.SQL, error) {
	cfg := &serverconfig.SQL{
		PluginName: sqliteplugin.PluginName,
		// One connection: SQLite has one writer at a time anyway, and with several
		// connections the server's concurrent writers got SQLITE_BUSY even in WAL mode.
		MaxConns:     1,
		MaxIdleConns: 1,
	}
	if file == "" {
		// A shared in-memory DB lives as long as a connection to it; the plugin never closes
		// its connection. The random name keeps two servers in one process apart (tests).
		cfg.DatabaseName = "temporal-" + strconv.FormatUint(rand.Uint64(), 36)
		cfg.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
	} else {
		cfg.DatabaseName = file
		// rwc creates the file. WAL lets reads proceed during a write, and with WAL,
		// synchronous=normal is still safe against a crash of this process (only a power
		// loss can lose the last transactions), at a fraction of the fsyncs.
		cfg.ConnectAttributes = map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "normal"}
	}
	for k, v := range pragmas {
		cfg.ConnectAttributes[k] = v
	}

	if file != "" {
		if err := createSchemaIfNew(cfg, file); err != nil {
			return nil, err
		}
	}

	nsConfigs := make([]*sqliteschema.NamespaceConfig, 0, len(namespaces))
	for _, ns := range namespaces {
		// On SQL visibility a custom search attribute is an alias of a preallocated column,
		// stored in the namespace record, so registering it here makes it usable from the
		// first call. Namespaces that already exist are left alone; ensureSearchAttributes
		// adds what they lack once the server is up.
		nc, err := sqliteschema.NewNamespaceConfig(clusterName, ns, false, searchAttrs)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		nsConfigs = append(nsConfigs, nc)
	}
	if err := sqliteschema.CreateNamespaces(cfg, nsConfigs...); err != nil {
		return nil, fmt.Errorf("register namespaces in %s: %w", describeDB(file), err)
	}
	return cfg, nil
}

// createSchemaIfNew creates the parent directory and, when file does not exist, the schema. A
// file that exists is assumed to hold the schema already: recreating it would fail on the
// existing tables. If creating the schema fails the file is removed, so that the next start
// tries again instead of failing on a half-made schema.
func createSchemaIfNew(cfg *serverconfig.SQL, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", file, err)
	}
	_, err := os.Stat(file)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("check %s: %w", file, err)
	}
	if err := sqliteschema.SetupSchema(cfg); err != nil {
		for _, f := range []string{file, file + "-wal", file + "-shm"} {
			_ = os.Remove(f)
		}
		return fmt.Errorf("create schema in %s: %w", file, err)
	}
	return nil
}

func describeDB(file string) string {
	if file == "" {
		return "in-memory db"
	}
	return file
}
