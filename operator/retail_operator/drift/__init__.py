"""Drift of the stable model: what its pods see and predict, against the model's hold-out.

* ``judge``: the pure verdict on one window's rows (PSI with a chi-squared test beside it).
* ``watch``: the windows, one after another: which pods' counters count (by reusing the
  canary's ``GroupWindow``, restart-safe and bound to one model), when a window ends, and the
  status it leaves. Pure: the reconcile scrapes the pods and hands it the readings.

The reference comes from the pods themselves: every predictor exports, beside its live
counters, the reference its model file carries (``retail_contract.metrics``). The operator
never downloads the model (its image has no XGBoost, and a model may be hundreds of MB);
the counts and the reference arrive in one scrape, labelled by the same model version, and
only readings of the model the window is bound to (by sha256) are believed. Drift never
changes what runs: it is a condition, ``status.drift``, Events and metrics.
"""
