"""Calibration: measure device decay and pulse response, fit them, and map them onto the STPN.

The record schema and the decay laws live in ``device_models`` (``record.py``, ``laws.py``).

fit.py       fit_decay: batched, robust decay fits with per-device status and model selection
expfast.py   the fused single-exponential kernel (numba) behind fit_decay(model="exp")
lm.py        batched robust Levenberg-Marquardt (torch) for the multi-parameter laws
mapping.py   tau <-> lambda, dt / bias for a target lambda, pulse <-> gamma, trained STPN vs array
campaign.py  decay and pulse-response protocols through a crossbar controller (drivers)
smu_campaign.py  decay versus bias on one device through an SMU (drivers)
bias.py      the device_models tau-versus-bias law fitted to tau measured per bias
storage.py   the HDF5 campaign file (docs/campaign-format.md): one table per measurement kind, flushed
             per unit, resumable
importer.py  traces measured elsewhere (CSV, NPZ, HDF5) -> a campaign file
analysis.py  campaign file -> CalibrationRecord, streamed in chunks
report.py    PNG plots and a text summary
"""
