"""Lip synchronisation (paper's fourth downstream task): Wav2Lip with a MARLIN face encoder, a SyncNet
expert for configurable windows, LSE-D / LSE-C and FID.

Modules: `audio` (16 kHz mono decoding, muxing), `mel` (Wav2Lip's mel spectrogram), `align`
(frame <-> mel windows), `toy` (generated talking clips), `data` (LRS2 layout), `syncnet`, `generator`,
`losses`, `config` (the settings as typed sections), `train`, `checkpoint` (container files, the older format,
Wav2Lip's released files), `wav2lip` (Wav2Lip's released networks), `metrics`, `fid` + `inception`, `mfcc` +
`syncnet_v2` (the official SyncNet for published-scale LSE), `infer`, `evaluate`.
"""
