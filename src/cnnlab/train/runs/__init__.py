"""A run on disk: :mod:`.directories` (two runs never share one; each command of a run keeps its
own saved config), :mod:`.checkpoint` (written atomically, loaded with ``weights_only=True``),
:mod:`.resume` (every decision about continuing a run: which checkpoint, which config, the errors),
:mod:`.start_checks` (refusals before Hydra creates anything), :mod:`.signals` (stop cleanly on
Ctrl-C, preemption and Slurm's warning) and :mod:`.record` (what exactly ran: code, versions, CPU,
kernels)."""
