"""PNG plots of the analyses (skipped, with a note, when matplotlib is not importable)."""
import numpy as np


def analysis_png(data, path, title):
    """One PNG: accuracy vs t, γ histograms per λ, accuracy vs p. Returns path or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from benchmarks.suite_analysis import GAMMA_EDGES
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    curve = [r for r in data["t_curve"] if r["after"] is not None]
    t = [100 * r["t"] for r in curve]
    axes[0].plot(t, [100 * r["before"] for r in curve], "o-", label="before fine-tune")
    axes[0].plot(t, [100 * r["after"] for r in curve], "s-", label="after fine-tune")
    axes[0].axhline(100 * data["t_curve"][0]["before"], color="grey", ls="--",
                    label="unpruned (sparsity-trained)")
    axes[0].set(xlabel="pruned channels t (%)", ylabel="test accuracy (%)",
                title="Network Slimming: accuracy vs t")
    axes[0].legend()
    x = np.arange(len(GAMMA_EDGES) - 1)
    width = 0.8 / len(data["gamma"])
    for i, r in enumerate(data["gamma"]):
        axes[1].bar(x + i * width, r["counts"], width, label=f"λ = {r['l1']:g}")
    axes[1].set_xticks(x + 0.4 - width / 2)
    axes[1].set_xticklabels([f"<{hi:g}" for hi in GAMMA_EDGES[1:]], rotation=45)
    axes[1].set(xlabel="|γ| bin", ylabel="channels", title="γ after sparsity training")
    axes[1].legend()
    p = [r["p"] for r in data["p_curve"]]
    axes[2].plot(p, [100 * r["after_rebuild"] for r in data["p_curve"]], "o-",
                 label="after rebuild")
    axes[2].plot(p, [100 * r["accuracy"] for r in data["p_curve"]], "s-",
                 label="after fine-tune")
    axes[2].set(xlabel="active fraction p", ylabel="test accuracy (%)",
                title="DCE: accuracy vs p")
    axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
