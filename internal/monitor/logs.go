package monitor

import (
	"path/filepath"

	"go.uber.org/zap"
)

// LogOptions configure the job logs that serve keeps: where, how much, and the log queue.
type LogOptions struct {
	Consumer LogConsumerOptions
	// Dir holds one file per job (default: logs/ beside the results store).
	Dir string
	// MaxTotal bounds all logs together, MaxJob one job's (DefaultLogMaxTotal, DefaultLogMaxJob).
	MaxTotal, MaxJob int64
}

// openLogs opens the log store and its consumer for serve.
func openLogs(o Options, metrics *Metrics, logger *zap.Logger) (*LogStore, *LogConsumer, error) {
	dir := o.Logs.Dir
	if dir == "" {
		dir = filepath.Join(filepath.Dir(o.StorePath), "logs")
	}
	store, st, err := OpenLogStore(dir, o.Logs.MaxTotal, o.Logs.MaxJob)
	if err != nil {
		return nil, nil, err
	}
	logger.Info("log store opened", zap.String("dir", dir), zap.Int("jobs", st.Jobs), zap.Int64("bytes", st.Bytes),
		zap.Int64("max_total", store.maxTotal), zap.Int64("max_job", store.maxJob))
	return store, NewLogConsumer(o.Logs.Consumer, store, metrics, logger.With(zap.String("queue", "logs"))), nil
}
