"""Data: domain sources, tokenizers, grain mixture pipelines, token accounting, evaluation tasks."""

from mergemix_jax.data.accounting import (
    check_token_budget,
    document_counts,
    epochs_per_domain,
    heldout_warnings,
    token_counts,
)
from mergemix_jax.data.batches import batch_from_sequences
from mergemix_jax.data.errors import DataError
from mergemix_jax.data.pipeline import (
    BATCH_KEYS,
    heldout_batches,
    make_sequence_dataset,
    make_train_dataset,
    normalize_mixture,
)
from mergemix_jax.data.sources import DocumentSource, DomainIndex, index_all, index_domain, iter_documents
from mergemix_jax.data.tasks import TaskItem, load_task_dir, load_tasks, task_name
from mergemix_jax.data.tokenizer import ByteTokenizer, Tokenizer, check_vocab, load_tokenizer, train_bpe

__all__ = [
    "BATCH_KEYS",
    "ByteTokenizer",
    "DataError",
    "DocumentSource",
    "DomainIndex",
    "TaskItem",
    "Tokenizer",
    "batch_from_sequences",
    "check_token_budget",
    "check_vocab",
    "document_counts",
    "epochs_per_domain",
    "heldout_batches",
    "heldout_warnings",
    "index_all",
    "index_domain",
    "iter_documents",
    "load_task_dir",
    "load_tasks",
    "load_tokenizer",
    "make_sequence_dataset",
    "make_train_dataset",
    "normalize_mixture",
    "task_name",
    "token_counts",
    "train_bpe",
]
