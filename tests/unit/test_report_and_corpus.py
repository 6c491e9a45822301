import itertools

from s2ray.config import load_config
from s2ray.report import summarize, table
from s2ray.toy.corpus import CHAT_TEMPLATE, VOCAB, examples, prompt_text


def test_summarize_and_table():
    records = [
        {"task": "coin_flip", "system": "system2", "method": "rar1", "correct": True, "generated_tokens": 40},
        {"task": "coin_flip", "system": "system2", "method": "rar1", "correct": False, "generated_tokens": 20},
        {"task": "coin_flip", "system": "system1", "method": "direct", "correct": True, "generated_tokens": 2},
    ]
    report = summarize(records)
    assert report == {"tasks": {"coin_flip": {
        "system1": {"accuracy": 1.0, "mean_generated_tokens": 2.0, "n": 1, "method": "direct"},
        "system2": {"accuracy": 0.5, "mean_generated_tokens": 30.0, "n": 2, "method": "rar1"}}}}
    text = table(report)
    assert "coin_flip" in text and "50.0%" in text and "100.0%" in text


def test_corpus_is_seeded_and_covers_every_taught_format():
    teach = load_config("local-cpu").toy_model.teach
    first = list(itertools.islice(examples(teach, 0), 3000))
    assert first == list(itertools.islice(examples(teach, 0), 3000))
    prompts = [u for u, _ in first]
    for prefix in ("rephrase and respond. last letters", "rephrase. coin", "rewrite without opinions:",
                   "branch criteria. judge", "solve correct.", "merge verdicts.", "step by step. compute"):
        assert any(p.startswith(prefix) for p in prompts), prefix
    direct_last_letter = [u for u in prompts if u.startswith("last letters:") and "\n" not in u]
    assert direct_last_letter and all(len(u.split()) == 4 for u in direct_last_letter)  # only 2-word inputs
    assert all(c in VOCAB for u, r in first for c in u + r)


def test_prompt_text_matches_chat_template_pieces():
    assert prompt_text("hi") == "Q: hi\nA: "
    assert "'Q: '" in CHAT_TEMPLATE and "\\nA: " in CHAT_TEMPLATE


def test_toy_batches_pack_whole_examples_each_seeing_only_itself():
    from s2ray.toy.build import _batches, make_tokenizer

    toy = load_config("local-cpu", ["toy_model.batch_size=4", "toy_model.block_size=128"]).toy_model
    tokenizer = make_tokenizer(toy.word_tokens)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    input_ids, labels, positions, additive = next(_batches(toy, tokenizer, pool=64))
    mask = additive == 0  # what each position may attend to
    assert input_ids.shape == labels.shape == positions.shape == (4, 128) and additive.shape == (4, 1, 128, 128)
    assert (input_ids != pad).float().mean() > 0.8  # best-fit packing leaves little padding
    for row in range(4):
        starts = [i for i in range(128) if positions[row, i] == 0 and input_ids[row, i] == bos]
        ends = [i for i in range(128) if input_ids[row, i] == eos]
        assert len(starts) == len(ends) >= 2
        for start, end in zip(starts, ends):
            # causal within the example, nothing outside it; the reply (and eos) carries the loss, the prompt not
            assert mask[row, 0, end, start:end + 1].all() and not mask[row, 0, end, :start].any()
            assert not mask[row, 0, start, start + 1:].any()
            assert tokenizer.decode(input_ids[row, start:end + 1]).startswith("<s>Q: ")
            assert labels[row, end] == eos and (labels[row, start:end + 1] == -100).any()
        assert (labels[row][input_ids[row] == pad] == -100).all()


def test_toy_batches_mask_gives_eager_attention_what_sdpa_computes():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from s2ray.toy.build import _batches, make_tokenizer

    toy = load_config("local-cpu", ["toy_model.batch_size=2"]).toy_model
    tokenizer = make_tokenizer(toy.word_tokens)
    input_ids, _, positions, additive = next(_batches(toy, tokenizer, pool=64))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)).eval()
    logits = {}
    with torch.no_grad():
        for impl, mask in (("eager", additive), ("sdpa", additive == 0)):
            model.config._attn_implementation = impl
            logits[impl] = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    assert torch.allclose(logits["eager"], logits["sdpa"], atol=1e-4)


def test_replay_stream_is_the_corpus_without_its_direct_answers():
    teach = load_config("local-cpu").toy_model.teach
    full = list(itertools.islice(examples(teach, 0), 3000))
    replay = list(itertools.islice(examples(teach, 0, direct=False), 1000))
    removed, it = [], iter(full)
    for item in replay:  # replay is the full stream with items taken out, in the same order
        for candidate in it:
            if candidate == item:
                break
            removed.append(candidate)
    methods = ("rephrase", "rewrite without opinions", "branch criteria", "solve", "merge", "step by step")
    assert removed and not any(u.startswith(methods) or "\n" in u for u, _ in removed)  # direct: one plain line
    # S2A's last step answers the rewritten, opinion-free question: the only single-line replay prompt
    assert all(u.startswith(methods) or "\n" in u or u.startswith("which is larger:") for u, _ in replay)
    for prefix in ("rephrase and respond. last letters", "rewrite without opinions:", "branch criteria. judge",
                   "step by step. compute"):
        assert any(u.startswith(prefix) for u, _ in replay), prefix
