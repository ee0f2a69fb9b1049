"""The reference log-prob cache: round trip and its precision bound, keys, corrupt files; corpus chunking."""
import pytest
import torch

from quantbench.harness.quality import reference_cache as rc
from quantbench.harness.quality.corpus import MIN_CTX, Corpus, CorpusError, default_corpus, load_corpus, make_chunks
from quantbench.harness.quality.kld_stats import log_probs

KEY = {"model": "m1", "device": "cpu", "dtype": "float32", "corpus_sha256": "abc", "ctx": 16, "first": 8, "bos": None}


def _reference(n=7, vocab=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(n, vocab, generator=gen, dtype=torch.float64)
    logits[0, :100] -= 60  # some tokens far below the 32-nat range
    return log_probs(logits), torch.randint(0, vocab, (n,), generator=gen)


def test_round_trip_is_within_the_stated_precision(tmp_path):
    logp, targets = _reference()
    tokens = torch.arange(16)
    cache = rc.ReferenceCache(KEY, tmp_path)
    chunk = rc.encode_reference(logp, targets)
    cache.save(3, tokens, chunk)
    loaded = cache.load(3, tokens)
    assert (loaded.codes == chunk.codes).all()
    assert torch.equal(loaded.top_tensor(), logp.argmax(-1))
    assert torch.allclose(loaded.target_tensor(), logp.gather(-1, targets[:, None])[:, 0], atol=1e-6, rtol=0)
    decoded = loaded.log_probs()
    assert torch.allclose(decoded.exp().sum(-1), torch.ones(7, dtype=torch.float64))
    kept = logp >= logp.max(-1, keepdim=True).values - rc.RANGE_NATS
    error = decoded - logp
    error = error - (error * logp.exp()).sum(-1, keepdim=True)  # the renormalization shift
    assert error[kept].abs().max() <= rc.STEP  # rounding (STEP/2) plus the shift
    kld = (logp.exp() * (logp - decoded)).sum(-1)  # KL(P || P~), the bias of a zero-noise config
    assert kld.abs().max() <= rc.STEP ** 2 / 8
    assert (error[kept].abs() > rc.STEP / 4).any()  # the rounding really is at STEP's scale
    assert loaded.nbytes == 7 * (2 * 300 + 8)


def test_cache_location_and_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("QUANTBENCH_CACHE", str(tmp_path / "elsewhere"))
    assert rc.cache_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("QUANTBENCH_CACHE")
    monkeypatch.setenv("QUANTBENCH_RESULTS", str(tmp_path / "res"))
    assert rc.cache_root() == tmp_path / "res" / "cache"
    a, b = rc.ReferenceCache(KEY, tmp_path), rc.ReferenceCache({**KEY, "ctx": 32}, tmp_path)
    assert a.folder != b.folder and a.folder == rc.ReferenceCache(dict(KEY), tmp_path).folder
    logp, targets = _reference()
    tokens = torch.arange(16)
    a.save(0, tokens, rc.encode_reference(logp, targets))
    b.folder.mkdir(parents=True)
    b.path(0).write_bytes(a.path(0).read_bytes())  # a file under the wrong key is not trusted
    assert b.load(0, tokens) is None
    assert a.load(1, tokens) is None  # missing
    assert a.load(0, tokens + 1) is None  # other tokens


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "header"])
def test_corrupt_file_is_reported_and_recomputed(tmp_path, capsys, damage):
    logp, targets = _reference()
    tokens = torch.arange(16)
    cache = rc.ReferenceCache(KEY, tmp_path)
    cache.save(0, tokens, rc.encode_reference(logp, targets))
    path = cache.path(0)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[-5] ^= 0xFF
    elif damage == "truncate":
        blob = blob[:len(blob) // 2]
    elif damage == "garbage":
        blob = bytearray(b"not a cache file at all")
    else:
        blob[len(rc.MAGIC) + 6] = ord("!")
    path.write_bytes(bytes(blob))
    calls = []

    def compute():
        calls.append(1)
        logits = torch.zeros(16, 300, dtype=torch.float64)
        logits[8:15] = logp
        return logits

    chunk, computed = cache.get(0, tokens, targets, 8, compute)
    assert computed and calls == [1]
    assert "unusable" in capsys.readouterr().err
    again, computed = cache.get(0, tokens, targets, 8, compute)
    assert not computed and calls == [1] and (again.codes == chunk.codes).all()


def test_default_corpus_is_deterministic():
    a, b = default_corpus(), default_corpus()
    assert a.name == "pydoc_topics" and len(a.text) > 400_000 and a.sha256 == b.sha256


def test_chunks_follow_llama_perplexity():
    chunks = make_chunks(list(range(100, 150)), ctx=16, n_chunks=5, bos=1)
    assert chunks.count == 3 and chunks.available == 3  # 50 tokens hold 3 chunks of 16
    assert chunks.first == 8 and chunks.n_scored == 7
    assert chunks.tokens[:, 0].tolist() == [1, 1, 1]
    assert chunks.tokens[1, 1:].tolist() == list(range(117, 132))
    assert chunks.targets(1).tolist() == list(range(125, 132))  # tokens after position 8
    assert make_chunks(list(range(100, 150)), 16, 2).tokens[1, 0].item() == 116  # no BOS: token kept


def test_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match="no tokens"):
        make_chunks([], 16, 1)
    with pytest.raises(CorpusError, match="fewer than one chunk"):
        make_chunks(list(range(15)), 16, 1, corpus_name="tiny.txt")
    with pytest.raises(CorpusError, match="too short"):
        make_chunks(list(range(100)), MIN_CTX - 1, 1)
    with pytest.raises(CorpusError, match="at least one chunk"):
        make_chunks(list(range(100)), 16, 0)
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(tmp_path / "bin.txt")
    (tmp_path / "ok.txt").write_text("hello world")
    assert load_corpus(tmp_path / "ok.txt") == Corpus("ok.txt", "hello world")
    assert load_corpus(None).name == "pydoc_topics"
