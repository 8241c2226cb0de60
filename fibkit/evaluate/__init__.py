"""One evaluator for every definition, driven by fibkit.catalog: inputs, calling a solution in
destination-passing style, judging, timing, peers, and the results records."""
