"""`tru reproduce` (make table1, table2, robustness, standard-metrics, alpha-sweep, option-shuffle):
the paper's tables and figures as jobs of the other commands, at paper scale or CPU scale. `spec`
turns a target and a scale into jobs; `plan` prices them before anything starts."""
