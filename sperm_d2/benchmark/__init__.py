"""The real-data accuracy benchmark behind ``benchmarks/real_data.py``.

``options`` (datasets, data location, argument checks), ``runner`` (one logged subprocess per
tool call), ``crops`` (smoke subsets and class-folder trees), ``training`` (the training step,
reused or resumed by its stamp), ``protocol`` (prepare, train, evaluate; split and K-fold),
``fields`` (the same on full microscope fields), ``results`` (metrics and mean ± std over folds)
and ``results_table`` (results.json and the Markdown table). ``study_setting`` holds the 2021
study's training setting for ``benchmarks/bench_train.py --study``.
"""
