"""How a bench result is shown, in the terminal and in the journal: the rows alone, so an entry
renders them without importing the training code that measured them."""


def result_rows(result: dict) -> list[list]:
    """The rows a bench result is shown as, in the terminal and in the journal."""
    if "ratio" in result:  # a preference method against mlx-lm-lora's command line
        return [
            ["sec/iter, labbench (recorded)", f"{result['ours_s_per_iter']:.3f}"],
            ["sec/iter, mlx-lm-lora's command line", f"{result['theirs_s_per_iter']:.3f}"],
            ["CPU sec/iter, labbench (recorded)", f"{result['ours_cpu_s_per_iter']:.3f}"],
            ["CPU sec/iter, mlx-lm-lora's command line", f"{result['theirs_cpu_s_per_iter']:.3f}"],
            ["CPU sec per 1k tokens, labbench", f"{result['ours_cpu_s_per_1k_tokens']:.3f}"],
            [
                "CPU sec per 1k tokens, mlx-lm-lora",
                f"{result['theirs_cpu_s_per_1k_tokens']:.3f}",
            ],
            ["ratio of CPU per token (mlx-lm-lora / labbench)", f"{result['ratio']:.2f}"],
        ]
    timing_gap = (result["agreement"] - 1) * 100
    return [
        ["model load", f"{result['load_seconds']:.2f} s"],
        # Runs recorded before the option was renamed (from `warmup`) say warmup_iterations.
        ["untimed iterations", result.get("untimed_iterations", result.get("warmup_iterations"))],
        ["measured iterations", result["measured_iterations"]],
        ["sec/iter", f"{result['sec_per_iter']:.3f}"],
        [
            "sec/iter (mlx-lm's own)",
            f"{result['mlx_sec_per_iter']:.3f} (our clock is {timing_gap:+.1f}% from mlx-lm's)",
        ],
        ["tokens/s", f"{result['tokens_per_second']:.0f}"],
        ["peak memory", f"{result['peak_memory_gb']:.3f} GB"],
        *scaling_rows(result.get("distributed")),
    ]


def scaling_rows(scaling: dict | None) -> list[list]:
    if not scaling:
        return []
    n = scaling["world_size"]
    return [
        [f"sec/iter on {n} ranks ({scaling['backend']})", f"{scaling['sec_per_iter']:.3f}"],
        [f"speed-up on {n} ranks", f"{scaling['speedup']:.2f}x"],
        ["scaling efficiency", f"{scaling['efficiency']:.0%} (100% = {n}x faster)"],
        ["measured where", scaling["where"]],
    ]
