"""The MARLIN model: encoder, optional decoder + projection, and the user API (compatible with marlin-pytorch)."""
from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ..precision import Precision
from .config import MarlinConfig, resolve_config
from .decoder import MarlinDecoder
from .encoder import MarlinEncoder
from .files import export_official, load_model, load_release


class Marlin(nn.Module):
    """MARLIN encoder (+ decoder and encoder->decoder projection when `full_model`)."""

    def __init__(self, config: MarlinConfig | str = "marlin_vit_base_ytf", full_model: bool = True):
        super().__init__()
        self.config = resolve_config(config)
        self.encoder = MarlinEncoder(self.config)
        self.full_model = full_model
        self.training_record: dict = {}  # the pretraining record of a loaded file (model cards show it)
        if full_model:  # registration order gives the official state-dict key order
            self.decoder = MarlinDecoder(self.config)
            self.enc_dec_proj = nn.Linear(self.config.encoder_embed_dim, self.config.decoder_embed_dim, bias=False)
            nn.init.xavier_uniform_(self.enc_dec_proj.weight)
        else:
            self.decoder = None
            self.enc_dec_proj = None

    @property
    def clip_frames(self) -> int:
        return self.config.n_frames

    @property
    def device(self) -> torch.device:
        return self.encoder.norm.weight.device

    # ---- model ---------------------------------------------------------------------------------------
    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Pixel predictions for the masked tokens, ascending token order: (B, N_masked, 3*t*p*p).

        x: (B, 3, T, H, W) float in [0, 1]; mask: bool (B, N), True = visible, same count per sample.
        """
        if self.decoder is None:
            raise RuntimeError("this is an encoder-only model: use extract_features/extract_video, "
                               "or build it with full_model=True / load a *.full.pt file")
        if mask is None:
            raise ValueError("forward needs a mask (bool (B, N), True = visible)")
        return self.decoder(self.enc_dec_proj(self.encoder(x, mask)), mask)

    @torch.no_grad()
    def extract_features(self, x: Tensor, keep_seq: bool = True, precision: Precision | str = "32") -> Tensor:
        """(B, 3, T, H, W) -> (B, N, D) when keep_seq, else (B, D) (mean over tokens, then the final norm).

        ``precision``: "32" (float32), "bf16" (bfloat16 autocast; pooling and final norm in float32), "16"
        (float16 autocast, GPUs) or "auto" (bf16 where the device computes it natively, else float32; see
        `marlin.precision`), resolved here; or a resolved `Precision`, used as it is. Features come back in the
        weights' dtype (float32), the reduced precisions too."""
        if not isinstance(precision, Precision):  # a name from a caller of the public API
            precision = Precision.resolve(precision, self.device)
        self.eval()
        x = x.to(self.device)
        with precision.autocast(self.device):
            return self.encoder.extract_features(x, keep_seq=keep_seq)

    @torch.no_grad()
    def extract_video(self, video_path, crop_face: bool = False, sample_rate: int = 2, stride: int = 16,
                      reduction: str = "none", keep_seq: bool = False, cover_tail: bool = False,
                      batch_size: int | None = None, precision: Precision | str = "32",
                      backend: str = "torch") -> Tensor:
        """Features of a whole video with the official sliding windows (see `marlin.video.windows`).

        Returns (n_clips, D) (or (n_clips, N, D) with keep_seq); reduction "mean"/"max" reduces over clips;
        ``batch_size``: clips per encoder call, by default 8 on a GPU and one 224 clip on a CPU
        (`marlin.extract.clips_per_call`); ``precision`` as in `extract_features`; ``backend`` torch | onnxruntime | openvino: the encoder exported
        once and run by that runtime on the CPU (`marlin.deploy`; the `onnx` / `openvino` extras).
        """
        from ..extract import video_features

        if not isinstance(precision, Precision):  # resolved once, for the device and backend
            precision = Precision.resolve(precision, self.device, backend)
        return video_features(self, video_path, crop_face=crop_face, sample_rate=sample_rate, stride=stride,
                              reduction=reduction, keep_seq=keep_seq, cover_tail=cover_tail, batch_size=batch_size,
                              precision=precision, backend=backend)

    # ---- construction and weights: each a one-line call of marlin.models.files, .hf or marlin.hub ----------
    @classmethod
    def from_config(cls, name_or_yaml: MarlinConfig | str | os.PathLike, full_model: bool = True) -> "Marlin":
        """A randomly initialised model of a preset name or official-layout YAML."""
        return cls(resolve_config(name_or_yaml), full_model=full_model)

    @classmethod
    def from_file(cls, name_or_yaml: MarlinConfig | str | os.PathLike | None, path: str | os.PathLike | None = None,
                  full_model: bool | None = None) -> "Marlin":
        """Load weights from an official `.encoder.pt` / `.full.pt` / `.ckpt`, a VideoMAE checkpoint, or our
        `.safetensors` (which carries its own config, so `name_or_yaml` may be None).

        Also accepts the marlin-pytorch 0.2 call `Marlin.from_file(path)` for our safetensors files.
        The architecture comes from the preset/YAML, never from a `.ckpt`'s recorded hyper-parameters.
        """
        return load_model(cls, name_or_yaml, path, full_model)

    @classmethod
    def from_pretrained(cls, repo_id_or_folder: str | os.PathLike, revision: str | None = None,
                        full: bool | None = False, token: str | bool | None = None) -> "Marlin":
        """Load a Hugging Face folder or Hub id: the official `ControlNet/marlin_vit_*_ytf` layout (no remote
        code runs), our `save_pretrained` layout, or a transformers VideoMAE folder (see `marlin.models.hf`).

        full: also the decoder (True), the encoder only (False), or whatever the folder holds (None).
        Hub ids go through huggingface_hub (its cache, HF_HUB_OFFLINE, `revision`, `token`)."""
        from .hf import load_pretrained

        return load_pretrained(cls, repo_id_or_folder, revision=revision, full=full, token=token)

    def save_pretrained(self, folder: str | os.PathLike, license: str | None = None, name: str | None = None):
        """config.json + model.safetensors (the official Hub layout) + a README.md model card."""
        from .hf import save_pretrained

        return save_pretrained(self, folder, license=license, name=name)

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool | None = None,
                    revision: str | None = None, license: str | None = None, commit_message: str = "Upload MARLIN model"):
        """save_pretrained, then upload to the Hugging Face Hub repo `repo_id` (created if needed; needs [hf])."""
        from .hf import push_to_hub

        return push_to_hub(self, repo_id, token=token, private=private, revision=revision, license=license,
                           commit_message=commit_message)

    def export_videomae(self, folder: str | os.PathLike):
        """A transformers VideoMAE folder (VideoMAEForPreTraining for a full model, else VideoMAEModel)."""
        from .hf import export_videomae

        return export_videomae(self, folder)

    @classmethod
    def from_online(cls, name: str = "marlin_vit_base_ytf", full_model: bool = False, progress: bool = True,
                    base_url: str | None = None) -> "Marlin":
        """Download (once, into `marlin.hub.cache_dir()`) and load an official release checkpoint.

        `base_url` (or `$MARLIN_RELEASE_URL`) replaces the release address, e.g. for a mirror.
        """
        return load_release(cls, name, full_model, progress, base_url)

    @staticmethod
    def clean_cache(verbose: bool = True) -> None:
        """Delete the downloaded release files (`marlin.hub.cache_dir()`)."""
        from ..hub import clean_cache

        clean_cache(verbose)

    def save(self, path: str | os.PathLike, training: dict | None = None) -> None:
        """Our format: safetensors weights + config in one file (`Marlin.from_file(None, path)` rebuilds it)."""
        from ..checkpoints import save_safetensors

        save_safetensors(path, self.state_dict(), self.config, training)

    def export_official(self, path: str | os.PathLike, encoder_only: bool | None = None) -> None:
        """Write the official `*.encoder.pt` (encoder keys only) or `*.full.pt` state-dict layout."""
        export_official(self, path, encoder_only)
