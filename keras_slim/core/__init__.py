"""Method-agnostic structural pruning: the channel graph and its rule registry, channel
plans, rebuild and mask, equivalence checks, params/MACs, channel criteria."""
