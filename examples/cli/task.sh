#!/bin/sh
# A stand-in for a coding assistant's CLI: reads its task on stdin, works in its own
# workspace (the current folder, a copy of ./project), and prints a one-line report.
task=$(cat)
sleep "${COHORT_TASK_SECONDS:-1}"
case "$task" in
  *count*) echo "notes.txt has $(wc -l < notes.txt | tr -d ' ') lines" ;;
  *changelog*)
    echo "- parallel run" >> CHANGELOG.md
    echo "- see CHANGELOG.md" >> notes.txt
    echo "CHANGELOG.md written, notes.txt points to it" ;;
  *summary*)
    echo "Summary: two ideas so far." >> notes.txt
    echo "summary appended to notes.txt" ;;
  *) echo "nothing to do for: $task" ;;
esac
