"""Run and sweep directories on disk: atomic files, locking, metrics rows, summaries, loggers."""
