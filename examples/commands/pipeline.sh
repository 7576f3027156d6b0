#!/bin/sh
# A shell pipeline as a gpujobs command job: it counts the words of the files an earlier job left
# (staged into $GPUJOBS_INPUT_DIR/<job>/), or of a generated text when there is none, and keeps
# the counts as an artifact.
#
#   starter submit command --input job-3f2a9c1b7e04 --output counts.txt -- sh pipeline.sh
set -eu
out=$GPUJOBS_OUTPUT_DIR/counts.txt
if [ -n "$(ls -A "$GPUJOBS_INPUT_DIR" 2>/dev/null)" ]; then
	find "$GPUJOBS_INPUT_DIR" -type f -exec cat {} + 
else
	i=0
	while [ $i -lt 2000 ]; do echo "the quick brown fox jumps over the lazy dog $i"; i=$((i + 1)); done
fi | tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | sort | uniq -c | sort -rn >"$out"
echo "GPUJOBS_PROGRESS 1"
echo "the most frequent words:"
head -5 "$out"
