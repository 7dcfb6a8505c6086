"""Pretrained bases in and out: Hugging Face safetensors (import/export) and GGUF (import).

Needs the optional extra `interop` (`pip install -e .[interop]`: safetensors, gguf, tokenizers).
"""

from mergemix_jax.interop.llama_layout import InteropError, hf_config_from_model, model_config_from_hf

__all__ = [
    "GGUFTokenizerInfo",
    "InteropError",
    "export_hf_safetensors",
    "hf_config_from_model",
    "import_gguf",
    "import_hf_safetensors",
    "model_config_from_hf",
]


def __getattr__(name: str):
    # Lazy, so `import mergemix_jax.interop` works without the optional extra installed.
    if name in ("import_hf_safetensors", "export_hf_safetensors"):
        from mergemix_jax.interop import hf

        return getattr(hf, name)
    if name in ("import_gguf", "GGUFTokenizerInfo"):
        from mergemix_jax.interop import gguf_import

        return getattr(gguf_import, name)
    raise AttributeError(name)
