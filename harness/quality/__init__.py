"""Model quality under quantized KV caches: KL divergence against the unquantized model, with the
statistics llama-perplexity --kl-divergence prints (`quantbench quality`)."""
from .corpus import Corpus, CorpusError, default_corpus, load_corpus
from .kld_stats import TokenStats, summarize, token_stats
from .run import COLUMNS, METRICS, TABLE_COLUMNS, quality_records, quality_table

__all__ = ["Corpus", "CorpusError", "default_corpus", "load_corpus", "TokenStats", "summarize", "token_stats",
           "COLUMNS", "METRICS", "TABLE_COLUMNS", "quality_records", "quality_table"]
