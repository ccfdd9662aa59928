"""``llmtraces bench``: a trace's capacity, goodput and energy on a launched or given engine."""
