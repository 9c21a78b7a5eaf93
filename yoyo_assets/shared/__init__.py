"""What both phases use: settings (every environment variable), the night partitions, run
budgets, crash points, run health, process groups, the embedded model, the inference server
resource, and the JSON Schema error wording. Imports no domain."""
