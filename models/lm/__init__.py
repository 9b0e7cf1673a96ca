"""Small language models on Shakespeare: the substrate (corpus, tokenizers, a tiny Qwen3-shaped
transformer, bits per byte, the causality check) and the vocabulary-space models (v8).

Substrate API (shared with the memory work):
    corpus.load_plays(), corpus.split_plays(plays)      whole plays held out (VAL/TEST_PLAYS)
    tokenizer.load_tokenizer(256 | 1024), encode_plays, piece_bytes
    transformer.TinyTransformer(TransformerConfig(...))  ids [B, T] -> logits [B, T, V]
    bpb.evaluate(logits_fn, streams, piece_bytes, context) -> Score(.bpb)
    causality.leaks(logits_fn, ids, positions, vocab) -> []  for a causal model
    lm_io.save_lm / load_lm; registry.build(arch, vocab, context, size)
    train.streams(vocab), train.train(model, ids, TrainConfig, context)
Remake: python -m hwgen.models.lm.tokenizer;
        python -m hwgen.models.lm.train --arch lm_transformer --vocab 256 --steps 2000 --out DIR
"""
