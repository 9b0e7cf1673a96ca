"""SentencePiece BPE tokenizers (vocabulary 256 and 1024) trained here on the training plays.

Why these settings: identity normalisation, no dummy prefix and newline as its own piece make
decode(encode(text)) == text byte for byte, so bits per byte counts exactly the bytes of the
play; one thread, no sampling and no shuffling make training deterministic, so the committed
models/checkpoints/lm_tokenizers/sp{V}.model can be remade bit for bit with
`python -m hwgen.models.lm.tokenizer`.

API
---
load_tokenizer(vocab) -> SentencePieceProcessor    the committed model (256 or 1024)
train_tokenizer(vocab, texts) -> bytes             a model proto trained on `texts`
encode_plays(sp, plays) -> {name: int64 array}     one token stream per play
piece_bytes(sp) -> int64 [V]                       UTF-8 bytes each piece decodes to
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import sentencepiece as spm

from hwgen.errors import InputError

VOCABS = (256, 1024)
TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "lm_tokenizers"
MAX_MODEL_BYTES = 1 << 20


def train_tokenizer(vocab: int, texts: list[str]) -> bytes:
    """A BPE model proto of `vocab` pieces trained on the lines of `texts` (deterministic)."""
    lines = [line for text in texts for line in text.split("\n")]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        user_defined_symbols=["\n"],
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return buf.getvalue()


def tokenizer_path(vocab: int) -> Path:
    if vocab not in VOCABS:
        raise InputError(f"tokenizer vocabulary must be one of {VOCABS}, got {vocab}")
    return TOKENIZER_DIR / f"sp{vocab}.model"


def load_tokenizer(vocab: int) -> spm.SentencePieceProcessor:
    """The committed tokenizer of `vocab` pieces."""
    path = tokenizer_path(vocab)
    if not path.is_file():
        raise InputError(f"{path}: not found; make it with `python -m hwgen.models.lm.tokenizer`")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise InputError(f"{path}: larger than {MAX_MODEL_BYTES} bytes")
    sp = spm.SentencePieceProcessor(model_proto=path.read_bytes())
    if sp.get_piece_size() != vocab:
        raise InputError(f"{path}: holds {sp.get_piece_size()} pieces, expected {vocab}")
    return sp


def encode_plays(sp: spm.SentencePieceProcessor, plays: dict[str, str]) -> dict[str, np.ndarray]:
    """{play: token ids (int64)}, one independent stream per play."""
    return {k: np.asarray(sp.encode(v), dtype=np.int64) for k, v in plays.items()}


def piece_bytes(sp: spm.SentencePieceProcessor) -> np.ndarray:
    """Bytes of text each piece stands for ('▁' is one space; the unknown piece counts 0)."""
    out = np.zeros(sp.get_piece_size(), dtype=np.int64)
    for i in range(sp.get_piece_size()):
        if not sp.is_unknown(i):
            out[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode())
    return out


def main() -> None:
    """Train both tokenizers on the training plays and write them into TOKENIZER_DIR."""
    from .corpus import load_plays, split_plays

    train = list(split_plays(load_plays())["train"].values())
    TOKENIZER_DIR.mkdir(parents=True, exist_ok=True)
    for vocab in VOCABS:
        path = tokenizer_path(vocab)
        path.write_bytes(train_tokenizer(vocab, train))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
