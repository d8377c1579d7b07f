"""Text for the zoo's CLIP models: a word-level Hugging Face `tokenizers` tokenizer and where it lives.

The tokenizer is a ``tokenizer.json`` in the weight's folder (Hugging Face's format), so the same file
tokenizes in Python, in the torch-free runtime and in any language with a Hugging Face tokenizers
binding. It is word level: the digit-scene captions use a few dozen words, and a word-level vocabulary
learned from them (`train_tokenizer`) keeps every word one token. Lower-cased, split on whitespace and
punctuation; ``<sot> words <eot>``, padded with ``<pad>`` (id 0) to ``context_length``.

- Unknown words become ``<unk>``, never an error: a user's free-text label still gets an embedding.
- Text longer than ``context_length`` tokens is truncated (the end-of-text token kept) with a warning.
- ``<eot>`` is the highest id, so a model finds it with ``tokens.argmax(-1)`` (as CLIP does).

This module imports `tokenizers` and numpy only (torch only inside `CaptionTokenizer.__call__`): the
torch-free runtime uses it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EOT",
    "PAD",
    "SOT",
    "TOKENIZER_FILE",
    "UNK",
    "CaptionTokenizer",
    "TruncationWarning",
    "get_tokenizer",
    "train_tokenizer",
]

TOKENIZER_FILE = "tokenizer.json"
PAD, UNK, SOT, EOT = "<pad>", "<unk>", "<sot>", "<eot>"


class TruncationWarning(UserWarning):
    """A text had more tokens than the model's context and was cut."""


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as err:  # a clear message instead of a bare ModuleNotFoundError deep in a call
        raise ImportError("CLIP's tokenizer needs Hugging Face tokenizers: pip install tokenizers") from err
    return tokenizers


class CaptionTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` set up for CLIP (see the module docstring).

    ``tokenizer(texts)`` gives (N, context_length) int64 torch ids, ``tokenizer.encode(texts)`` the same
    as a numpy array (torch-free).
    """

    def __init__(self, tokenizer: Any):
        padding, truncation = tokenizer.padding, tokenizer.truncation
        if not padding or not padding.get("length") or not truncation:
            raise ValueError(
                "a CLIP tokenizer pads and truncates to a fixed context length (train_tokenizer)"
            )
        self.tokenizer = tokenizer
        self.context_length = int(padding["length"])
        vocab = tokenizer.get_vocab()
        missing = [t for t in (PAD, UNK, SOT, EOT) if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks the special tokens {missing}")
        self.pad_id, self.unk_id, self.eot_id = vocab[PAD], vocab[UNK], vocab[EOT]
        if self.eot_id != max(vocab.values()):
            raise ValueError(f"{EOT} must be the highest id (the model pools at tokens.argmax(-1))")

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def vocabulary(self) -> list[str]:
        """The words, by id."""
        vocab = self.tokenizer.get_vocab()
        return sorted(vocab, key=vocab.__getitem__)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CaptionTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        return cls(_tokenizers().Tokenizer.from_file(str(path)))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))
        return path

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """(N, context_length) int64 ids; warns (`TruncationWarning`) about texts that were cut."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"texts must be strings, got {[type(t).__name__ for t in texts]}")
        encodings = self.tokenizer.encode_batch(list(texts))
        cut = [t for t, e in zip(texts, encodings) if e.overflowing]
        if cut:
            warnings.warn(
                f"{len(cut)} text(s) longer than the {self.context_length}-token context were truncated, "
                f"e.g. {cut[0][:80]!r}",
                TruncationWarning,
                stacklevel=2,
            )
        return np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(
            len(encodings), self.context_length
        )

    def __call__(self, texts: str | Sequence[str]) -> Any:
        import torch

        return torch.from_numpy(self.encode(texts))

    def words(self, text: str) -> list[str]:
        """The tokens of `text` (without specials or padding), for messages and tests."""
        encoding = self.tokenizer.encode(text)
        return [
            tok
            for tok, i in zip(encoding.tokens, encoding.ids)
            if i not in (self.pad_id, self.eot_id) and tok != SOT
        ]


def train_tokenizer(corpus: Iterable[str], context_length: int = 32) -> CaptionTokenizer:
    """A word-level tokenizer whose vocabulary is every word of `corpus` (ids by frequency, after
    ``<pad>`` 0, ``<unk>`` 1, ``<sot>`` 2; ``<eot>`` last)."""
    if context_length < 3:
        raise ValueError(f"context_length {context_length} leaves no room for words between <sot> and <eot>")
    tk = _tokenizers()
    tokenizer = tk.Tokenizer(tk.models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = tk.normalizers.Sequence([tk.normalizers.NFKC(), tk.normalizers.Lowercase()])
    tokenizer.pre_tokenizer = tk.pre_tokenizers.Whitespace()
    trainer = tk.trainers.WordLevelTrainer(special_tokens=[PAD, UNK, SOT], min_frequency=1)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.add_special_tokens([EOT])  # after training: the highest id
    sot, eot = tokenizer.token_to_id(SOT), tokenizer.token_to_id(EOT)
    tokenizer.post_processor = tk.processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, sot), (EOT, eot)]
    )
    # Truncation counts the template's two special tokens, so <eot> survives a cut.
    tokenizer.enable_truncation(max_length=context_length)
    tokenizer.enable_padding(length=context_length, pad_id=tokenizer.token_to_id(PAD), pad_token=PAD)
    return CaptionTokenizer(tokenizer)


def get_tokenizer(name_or_folder: str | os.PathLike) -> CaptionTokenizer:
    """The tokenizer of a published CLIP weight (``"clip_resnet_tiny.scenes"``), of a weight folder, or of
    a Hugging Face repo in zoo layout (``"hf-hub:org/repo[@revision]"``, fetched with the weights)."""
    from zoo.hub import HF_PREFIX, download_repo, parse_hf_name, resolve_weight_folder

    folder = Path(name_or_folder)
    if str(name_or_folder).startswith(HF_PREFIX):
        folder = download_repo(*parse_hf_name(str(name_or_folder)))
    elif not (folder / TOKENIZER_FILE).is_file():
        from zoo.registry import get_weights

        folder = resolve_weight_folder(get_weights(str(name_or_folder)))
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"weight folder {folder} has no {TOKENIZER_FILE}: is it a CLIP weight?")
    return CaptionTokenizer.from_file(path)
