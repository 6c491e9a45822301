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
