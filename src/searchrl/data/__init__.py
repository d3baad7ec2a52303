"""QA data, corpora of QA files, the synthetic world, tag protocols."""
