"""What every stage shares: the config-hash run folder (run_dir), the training recipes of bases,
experts and references (training, references), the Engine that scores mixtures, the mixtures every
stage draws (mixtures), the run's utility (utility, problem) and shared statistics (stats).

Layering: runkit/ sits below the stages (pipeline, verify, validate) and the report, which all import
it; it imports only the core and search layers, never a stage."""
