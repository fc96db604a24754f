"""The task layer against transformers.pipeline on a tiny random DistilBERT with the real bert-base-uncased
vocabulary. Heads are scaled up so labels, entities and spans have clear winners."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from runtimes.errors import ConfigError, InputError
from runtimes.heads import TASKS
from runtimes.tasks import TaskPipeline, TruncationWarning

from tiny_tasks import (CONTEXT, LONG_CONTEXT, QUESTIONS, RUNTIMES, SENTENCES, TorchInfer, make,
                        reference, same)


def test_json_plain_types(tiny):
    for task, inputs in (("text-classification", SENTENCES[:2]), ("fill-mask", ["a [MASK] b", "[MASK] c"]),
                         ("token-classification", SENTENCES[:2]), ("feature-extraction", SENTENCES[:2]),
                         ("question-answering", [{"question": q, "context": CONTEXT} for q in QUESTIONS]),
                         ("multiple-choice", [{"prompt": "Pick", "choices": ["a", "b c"]}] * 2)):
        answer = make(tiny, task)(inputs)
        assert json.loads(json.dumps(answer)) == answer


# --- text-classification --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"top_k": None}, {"top_k": 1}, {"top_k": 2}, {"function_to_apply": "sigmoid"},
                                    {"function_to_apply": "none", "top_k": None}])
@RUNTIMES
def test_text_classification_matches_pipeline(tiny, kwargs, backend, runtime_of):
    ours, ref = make(tiny, "text-classification", runtime_of("text-classification", backend), batch_size=3), reference(tiny, "text-classification")
    for text in SENTENCES[:3]:
        same(ours(text, **kwargs), ref(text, **kwargs))
    same(ours(SENTENCES, **kwargs), ref(SENTENCES, **kwargs))
    pair = {"text": SENTENCES[0], "text_pair": SENTENCES[1]}
    same(ours(pair, **kwargs), ref(pair, **kwargs))
    same(ours([pair, pair], **kwargs), ref([pair, pair], **kwargs))


def test_text_classification_has_clear_winners_and_problem_type(tiny):
    answers = make(tiny, "text-classification")(SENTENCES)
    assert len({a["label"] for a in answers}) > 1 and max(a["score"] for a in answers) > 0.6
    ref = reference(tiny, "text-classification")
    multi = make(tiny, "text-classification", problem_type="multi_label_classification")
    same(multi(SENTENCES, top_k=None), ref(SENTENCES, top_k=None, function_to_apply="sigmoid"))
    regression = make(tiny, "text-classification", problem_type="regression")
    same(regression(SENTENCES[0], top_k=None), ref(SENTENCES[0], top_k=None, function_to_apply="none"))


# --- fill-mask ------------------------------------------------------------------------------------------

MASKED = ["Paris is the [MASK] of France.", "The [MASK] sat on the [MASK] all day long.",
          "I [MASK] this.", "She plays the [MASK] in a band from New York, and the crowd [MASK] [MASK] loudly."]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1}, {"top_k": 12}, {"targets": ["capital", "city", "zzzqqq"]}])
@RUNTIMES
def test_fill_mask_matches_pipeline(tiny, kwargs, backend, runtime_of):
    ours, ref = make(tiny, "fill-mask", runtime_of("fill-mask", backend), batch_size=2), reference(tiny, "fill-mask")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-vocabulary target notices
        for text in MASKED:
            same(ours(text, **kwargs), ref(text, **kwargs))
        same(ours(MASKED, **kwargs), ref(MASKED, **kwargs))
        same(ours(MASKED[:1], **kwargs), ref(MASKED[:1], **kwargs))  # a list of one is unwrapped, as in the pipeline


def test_fill_mask_shapes_and_no_mask(tiny):
    ours = make(tiny, "fill-mask")
    one, several = ours(MASKED[0]), ours(MASKED[1])
    assert len(one) == 5 and set(one[0]) == {"score", "token", "token_str", "sequence"}
    assert len(several) == 2 and all(len(row) == 5 for row in several)
    with pytest.raises(InputError, match=r"input #1 has no \[MASK\]"):
        ours([MASKED[0], "no mask here"])


# --- token-classification -------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
@RUNTIMES
def test_token_classification_matches_pipeline(tiny, strategy, backend, runtime_of):
    ours, ref = make(tiny, "token-classification", runtime_of("token-classification", backend), batch_size=4), reference(tiny, "token-classification")
    kw = {"aggregation_strategy": strategy}
    for text in SENTENCES:
        same(ours(text, **kw), ref(text, **kw))
    same(ours(SENTENCES, **kw), ref(SENTENCES, **kw))
    for ignore in ([], ["O", "B-PER"]):
        same(ours(SENTENCES[:3], ignore_labels=ignore, **kw), ref(SENTENCES[:3], ignore_labels=ignore, **kw))


def test_token_classification_finds_entities(tiny):
    tokens = [e for row in make(tiny, "token-classification")(SENTENCES, ignore_labels=[]) for e in row]
    assert len({e["entity"] for e in tokens}) >= 4 and any(e["entity"] == "O" for e in tokens)
    assert max(e["score"] for e in tokens) > 0.8
    assert any(e["word"] == "🤗" for e in make(tiny, "token-classification")(SENTENCES[4], ignore_labels=[]))  # [UNK]


# --- feature-extraction ---------------------------------------------------------------------------------


@RUNTIMES
def test_feature_extraction_matches_pipeline(tiny, backend, runtime_of):
    ours, ref = make(tiny, "feature-extraction", runtime_of("feature-extraction", backend), batch_size=3), reference(tiny, "feature-extraction")
    got, want = ours(SENTENCES), ref(SENTENCES)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.shape(g) == np.shape(w) and np.shape(g)[0] == 1
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    single = ours(SENTENCES[3])
    np.testing.assert_allclose(single, ref(SENTENCES[3]), atol=1e-4, rtol=0)


# --- question-answering ---------------------------------------------------------------------------------


def qa_reference(tiny, question, context, *, top_k=1, doc_stride=None, max_answer_len=15, max_seq_len=None,
                 handle_impossible_answer=False, align_to_words=True):
    """transformers 4.x QuestionAnsweringPipeline (fast-tokenizer path), one window per model call.
    transformers 5 removed that pipeline; its pre/postprocessing is ported here around transformers'
    own select_starts_ends (kept in document_question_answering, identical to the 4.x QA one)."""
    import torch
    from transformers.pipelines.document_question_answering import select_starts_ends

    model, tok = tiny["question-answering"]
    max_seq_len = max_seq_len or min(tok.model_max_length, 384)
    doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
    enc = tok(text=question, text_pair=context, padding="do_not_pad", truncation="only_second", max_length=max_seq_len,
              stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    min_null, answers = 1000000, []
    for span in range(len(enc["input_ids"])):
        ids, mask = enc["input_ids"][span], enc["attention_mask"][span]
        p_mask = [t != 1 for t in enc.sequence_ids(span)]
        for cls in np.nonzero(np.array(ids) == tok.cls_token_id)[0]:
            p_mask[cls] = 0
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask]))
        starts, ends, scores, min_null = select_starts_ends(
            out.start_logits.numpy(), out.end_logits.numpy(), np.array([p_mask]), np.array([mask]), min_null,
            top_k * 2 + 10 if align_to_words else top_k, handle_impossible_answer, max_answer_len)
        e = enc[span]
        for s, t, score in zip(starts, ends, scores):
            try:
                assert align_to_words
                a = e.word_to_chars(e.token_to_word(s), sequence_index=1)[0]
                b = e.word_to_chars(e.token_to_word(t), sequence_index=1)[1]
            except Exception:
                a, b = e.offsets[s][0], e.offsets[t][1]
            hit = next((x for x in answers if x["answer"].lower() == context[a:b].lower()), None)
            if hit:
                hit["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": a, "end": b, "answer": context[a:b]})
    if handle_impossible_answer:
        answers.append({"score": min_null, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"handle_impossible_answer": True, "top_k": 2},
                                    {"max_answer_len": 4, "align_to_words": False},
                                    {"max_seq_len": 64, "doc_stride": 16, "top_k": 2}])
@RUNTIMES
def test_question_answering_matches_reference(tiny, kwargs, backend, runtime_of):
    ours = make(tiny, "question-answering", runtime_of("question-answering", backend), batch_size=4)
    for context in (CONTEXT, LONG_CONTEXT):
        for q in QUESTIONS:
            same(ours(question=q, context=context, **kwargs), qa_reference(tiny, q, context, **kwargs))
        want = [qa_reference(tiny, q, context, **kwargs) for q in QUESTIONS]
        same(ours(question=QUESTIONS, context=context, **kwargs), want)
        same(ours([{"question": q, "context": context} for q in QUESTIONS], **kwargs), want)


def test_question_answering_long_context_uses_stride_windows(tiny):
    model, tok = tiny["question-answering"]
    assert len(tok(QUESTIONS[0], LONG_CONTEXT)["input_ids"]) > 384
    ours = make(tiny, "question-answering", batch_size=16)
    got = ours(question=QUESTIONS, context=[LONG_CONTEXT, CONTEXT, LONG_CONTEXT])
    same(got, [qa_reference(tiny, q, c) for q, c in zip(QUESTIONS, [LONG_CONTEXT, CONTEXT, LONG_CONTEXT])])
    windows = sum(b for b, _ in ours.runtime.shapes)
    assert windows > 3 and max(s for _, s in ours.runtime.shapes) == 384
    assert all(LONG_CONTEXT[a["start"]:a["end"]] == a["answer"] for a in (got[0], got[2]))


def test_question_answering_inputs(tiny):
    ours = make(tiny, "question-answering")
    single = ours({"question": QUESTIONS[0], "context": CONTEXT})
    assert set(single) == {"score", "start", "end", "answer"}
    same(ours(question=QUESTIONS[:1], context=CONTEXT), single)  # a list of one is unwrapped, as in the pipeline
    with pytest.raises(InputError, match="2 questions and 1 contexts"):
        ours(question=QUESTIONS[:2], context=[CONTEXT])
    with pytest.raises(InputError, match="question"):
        ours(question="", context=CONTEXT)
    with pytest.raises(ConfigError, match="max_seq_len=600"):
        ours(question=QUESTIONS[0], context=CONTEXT, max_seq_len=600)
    with pytest.warns(TruncationWarning, match="max_question_len=4"):
        ours(question=QUESTIONS[0], context=CONTEXT, max_question_len=4)
    with pytest.raises(InputError, match="room"):
        ours(question=QUESTIONS[0], context=CONTEXT, max_seq_len=16, doc_stride=8)


# --- multiple-choice ------------------------------------------------------------------------------------


@RUNTIMES
def test_multiple_choice_is_softmax_of_torch_logits(tiny, backend, runtime_of):
    import torch

    model, tok = tiny["multiple-choice"]
    items = [{"prompt": "The weather today is", "choices": ["sunny and warm", "a banana", "cold"]},
             {"prompt": "Paris is in", "choices": ["France", "the middle of the Pacific Ocean, far from land"]},
             {"prompt": "Cats like", "choices": ["fish", "water", "dogs", "sleeping all day long"]},
             {"prompt": "Two plus two is", "choices": ["four", "five"]}]
    ours = make(tiny, "multiple-choice", runtime_of("multiple-choice", backend), batch_size=3)
    got = ours(items)
    for item, answer in zip(items, got):
        enc = tok([item["prompt"]] * len(item["choices"]), item["choices"], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**{k: v[None] for k, v in enc.items()}).logits[0]
        probs = torch.softmax(logits, -1)
        assert answer["choice"] == int(logits.argmax())
        np.testing.assert_allclose(answer["scores"], probs.numpy(), atol=1e-4, rtol=0)
    # one batch per number of choices: (2 prompts x 2 choices), (1 x 3), (1 x 4)
    if backend == "adapter":
        assert sorted(s[:2] for s in ours.runtime.shapes) == [(1, 3), (1, 4), (2, 2)]
    same(ours(items[1]), got[1])
    with pytest.raises(InputError, match="at least one choice"):
        ours({"prompt": "x", "choices": []})


# --- batching, errors, overflow -------------------------------------------------------------------------


def test_batches_are_dynamically_padded(tiny):
    ours = make(tiny, "text-classification", batch_size=3)
    ours(SENTENCES)
    _, tok = tiny["text-classification"]
    lengths = sorted(len(tok(s)["input_ids"]) for s in SENTENCES)
    assert [b for b, _ in ours.runtime.shapes] == [3, 3, 1]
    assert [s for _, s in ours.runtime.shapes] == [lengths[2], lengths[5], lengths[6]]


@pytest.mark.parametrize("task", TASKS)
def test_empty_inputs_are_input_errors(tiny, task):
    ours = make(tiny, task)
    with pytest.raises(InputError, match="empty list"):
        ours([])
    if task == "question-answering":
        with pytest.raises(InputError, match="empty list"):
            ours(question=[], context=CONTEXT)
    elif task != "multiple-choice":
        with pytest.raises(InputError, match="non-empty string"):
            ours(["fine [MASK].", ""])


@pytest.mark.parametrize("task", ["text-classification", "feature-extraction", "token-classification", "fill-mask"])
def test_overlong_text_is_truncated_with_a_notice(tiny, task):
    text = "[MASK] " + " ".join(SENTENCES * 12)
    ours, ref = make(tiny, task), reference(tiny, task)
    notice = r"1 input\(s\) longer than max_length=512 tokens \(#0: \d+\).*on_overflow='error'"
    with pytest.warns(TruncationWarning, match=notice):
        got = ours(text)
    kw = {} if task == "token-classification" else {"tokenizer_kwargs": {"truncation": True}} if task == "fill-mask" \
        else {"truncation": True}
    want = ref(text, **kw)
    if task == "feature-extraction":
        assert np.shape(got) == np.shape(want) == (1, 512, 32)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    else:
        same(got, want)
    with pytest.raises(InputError, match="longer than max_length=512"):
        make(tiny, task, on_overflow="error")(["[MASK] short", text])


def test_config_errors(tiny):
    model, tok = tiny["text-classification"]
    with pytest.raises(ConfigError, match="unknown task 'summarization'"):
        TaskPipeline(TorchInfer(model, "text-classification"), tok, "summarization")
    with pytest.raises(ConfigError, match="on_overflow='drop'"):
        make(tiny, "text-classification", on_overflow="drop")
    with pytest.raises(ConfigError, match="batch_size"):
        make(tiny, "text-classification", batch_size=0)
    with pytest.raises(ConfigError, match="does not take top_n"):
        make(tiny, "fill-mask")("a [MASK]", top_n=3)
    with pytest.raises(ConfigError, match="aggregation_strategy='best'"):
        make(tiny, "token-classification")("x", aggregation_strategy="best")


def test_task_layer_imports_no_torch():
    code = "import sys, runtimes, runtimes.tasks; from runtimes.tasks import TaskPipeline, load_tokenizer; " \
           "bad = [m for m in ('torch', 'tensorrt') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_load_tokenizer_imports_no_torch(tiny, tmp_path):
    _, tok = tiny["fill-mask"]
    tok.save_pretrained(tmp_path)
    code = (f"import sys; from runtimes.tasks import load_tokenizer; t = load_tokenizer({str(tmp_path)!r}); "
            f"assert t.mask_token == '[MASK]' and t.is_fast; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
