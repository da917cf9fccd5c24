"""The paper's experiments: budgets per preset, results folders and records, tables and claims, figures, the report."""
