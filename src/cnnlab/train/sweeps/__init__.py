"""Many runs: :mod:`.sweep` (a sweep's job directories named by what was swept, its summary when it
ends), :mod:`.summary` (tables of finished runs, mean ± std over seeds, the plots ``python -m
cnnlab.compare`` draws), :mod:`.search` (Optuna's sampler for ``hparams_search=optuna``) and
:mod:`.tensorboard_server` (TensorBoard served and asked over HTTP what it shows, as a user's
browser would: what the end-to-end tests and the docs' screenshots read)."""
