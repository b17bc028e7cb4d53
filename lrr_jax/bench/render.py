"""Markdown tables of a saved `python -m lrr_jax.bench` result (`--render=FILE`); no JAX needed."""

from __future__ import annotations

TARGETS = {"masked_over_dense": "<= 1.03", "vmap_speedup": ">= 8",
           "methods_one_program_speedup": ">= 1", "figure_one_program_speedup": ">= 1",
           "prune_seconds": "< 1",
           "input_train_images_per_second_per_core": ">= 300", "stream_over_device": ">= 0.8"}


def met(result: dict) -> dict:
    """Whether each figure with a target meets it (None: not measured)."""
    def check(name, ok):
        value = result.get(name)
        return None if value is None else ok(value)

    return {"masked_over_dense": check("masked_over_dense", lambda v: v <= 1.03),
            "vmap_speedup": check("vmap_speedup", lambda v: v >= 8),
            "methods_one_program_speedup": check("methods_one_program_speedup",
                                                 lambda v: v >= 1),
            "figure_one_program_speedup": check("figure_one_program_speedup", lambda v: v >= 1),
            "prune_seconds": check("prune_seconds", lambda v: v < 1.0),
            "input_train_images_per_second_per_core": check(
                "input_train_images_per_second_per_core", lambda v: v >= 300),
            "stream_over_device": check("stream_over_device", lambda v: v >= 0.8)}


def render_markdown(result: dict) -> str:
    """Markdown tables of a bench JSON object (`python -m lrr_jax.bench --render=FILE`)."""
    dev = result["device"]
    lines = [f"Device: {dev['device_kind']} ({dev['platform']}, {dev['num_devices']} device(s), "
             f"{dev['host_cpus']} host CPUs), jax {dev['jax']}. Command: `{result['command']}`. "
             f"Load average at start {result['loadavg_start']}, at end {result['loadavg_end']}; "
             f"{result['wall_seconds']} s in all.", ""]
    if result["throughput"]:
        lines += ["| model | dtype | width | batch | masked img/s | dense img/s | "
                  "masked step s | masked/dense | compile+first epoch s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["throughput"]:
            m, d = r["masked"], r["dense"]
            lines.append(f"| {r['model']} | {r['dtype']} | {r['width']} | {r['batch']} | "
                         f"{m['images_per_second']} | {d['images_per_second']} | "
                         f"{m['step_seconds']} | {r['masked_over_dense']} | "
                         f"{m['warmup_seconds_incl_compile']} |")
        lines.append("")
    headline = [("masked_over_dense (worst)", result.get("masked_over_dense"),
                 TARGETS["masked_over_dense"]),
                ("vmap_speedup", result.get("vmap_speedup"), TARGETS["vmap_speedup"]),
                ("vmap_runs_speedup", result.get("vmap_runs_speedup"), ""),
                ("methods_one_program_speedup", result.get("methods_one_program_speedup"),
                 TARGETS["methods_one_program_speedup"]),
                ("figure_one_program_speedup", result.get("figure_one_program_speedup"),
                 TARGETS["figure_one_program_speedup"]),
                ("prune_seconds", result.get("prune_seconds"), TARGETS["prune_seconds"]),
                ("input_train_images_per_second_per_core",
                 result.get("input_train_images_per_second_per_core"),
                 TARGETS["input_train_images_per_second_per_core"]),
                ("stream_over_device", result.get("stream_over_device"),
                 TARGETS["stream_over_device"]),
                ("quickstart_seconds", result.get("quickstart_seconds"), ""),
                ("torch_ratio (lrr_jax / PyTorch time)", result.get("torch_ratio"), "")]
    if any(value is not None for _, value, _ in headline):
        lines += ["| measure | value | target |", "|---|---:|---|"]
        lines += [f"| {name} | {value} | {target} |" for name, value, target in headline
                  if value is not None]
    details = result.get("details", {})
    if "vmap" in details:
        v = details["vmap"]
        lines += ["", f"vmap: {v['replicas']} replicas of {v['model']} on {v['dataset']}, "
                  f"batch {v['batch']}, {v['epochs']} epochs of {v['steps_per_epoch']} steps: "
                  f"vmapped {v['vmapped']['median_seconds']} s "
                  f"({v['vmapped']['gflops_per_second']} GFLOP/s), sequential "
                  f"{v['sequential']['median_seconds']} s "
                  f"({v['sequential']['gflops_per_second']} GFLOP/s); one 2048x2048 "
                  f"matmul: {v['peak_matmul_gflops_per_second']} GFLOP/s, so no same-work "
                  f"batching can exceed {v['speedup_bound']}x. First-epoch max relative "
                  f"loss difference, replica vs its sequential run: "
                  f"{v['first_epoch_max_rel_loss_difference']}."]
    if "vmap_runs" in details:
        v = details["vmap_runs"]
        lines += ["", f"vmap_runs: {v['replicas']} sequential runs ({v['method']}, "
                  f"{v['levels']} levels x {v['epochs_per_level']} epochs + "
                  f"{v['warmup_epochs']} warm-up) {v['sequential_seconds']} s vs one run with "
                  f"{v['replicas']} replicas {v['vmapped_seconds']} s; mean last-level test "
                  f"accuracy {v['sequential_last_level_mean_test_acc']} vs "
                  f"{v['vmapped_last_level_mean_test_acc']}."]
    if "methods" in details:
        v = details["methods"]
        lines += ["", f"methods: {', '.join(v['methods'])} x {v['num_replicas']} seeds "
                  f"({v['levels']} levels x {v['epochs_per_level']} epochs + "
                  f"{v['warmup_epochs']} warm-up, data_order {v['data_order']}): one program "
                  f"{v['one_program_seconds']} s, one replica at a time "
                  f"{v['one_replica_at_a_time_seconds']} s, one method at a time "
                  f"{v['one_method_at_a_time_seconds']} s; mean last-level test accuracy "
                  f"{v['one_program_last_level_mean_test_acc']} / "
                  f"{v['one_replica_at_a_time_last_level_mean_test_acc']} / "
                  f"{v['one_method_at_a_time_last_level_mean_test_acc']}."]
        if "figure_one_program_seconds" in v:
            lines += ["", f"figure: {', '.join(v['figure_methods'])} x {v['num_replicas']} "
                      f"seeds as one program {v['figure_one_program_seconds']} s, as two "
                      f"stages one after another {v['figure_two_stages_seconds']} s; mean "
                      f"last-level test accuracy {v['figure_one_program_last_level_mean_test_acc']}"
                      f" / {v['figure_two_stages_last_level_mean_test_acc']}."]
    if "input" in details:
        h, v = details["input"]["host"], details["input"]["pipelines"]
        lines += ["", f"input: ImageNet's host transforms on {h['images']} generated "
                  f"{h['jpeg_pixels']} JPEGs ({h['jpeg_kb_mean']} KB on average), one thread: "
                  f"train (decode + RandomResizedCrop 224 + flip) "
                  f"{h['train_images_per_second_one_thread']} images/s, eval (Resize 256 + "
                  f"CenterCrop 224) {h['eval_images_per_second_one_thread']} images/s; the "
                  f"stream's reader with {h['reader_threads']} threads "
                  f"{h['train_images_per_second_reader_all_cores']} images/s "
                  f"({h['train_images_per_second_per_core']} per core). One epoch of "
                  f"{v['model']} x{v['width']} at batch {v['batch']} on {v['examples']} "
                  f"examples ({v['dataset']}): on-device {v['device']['images_per_second']} "
                  f"images/s, streamed {v['stream']['images_per_second']} images/s "
                  f"(ratio {v['stream_over_device']}, median of {v['repeats']} alternating "
                  "repeats)."]
    if "checkpoints" in details:
        lines += ["", "checkpoints: median seconds of "
                  f"{details['checkpoints']['repeats']} repeats; lrr_jax's Store (orbax "
                  "Checkpointer + SHA-256 manifest + fsync + rename; restore verifies) against "
                  "orbax's CheckpointManager.", "",
                  "| state MiB | Store save | Store restore | Manager save | Manager restore | "
                  "Manager async save returns / done | flipped byte: Store | flipped byte: "
                  "Manager |", "|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in details["checkpoints"]["sizes"]:
            lines.append(f"| {r['state_mib']} | {r['store_save_seconds']} | "
                         f"{r['store_restore_seconds']} | {r['manager_save_seconds']} | "
                         f"{r['manager_restore_seconds']} | "
                         f"{r['manager_async_save_returns_seconds']} / "
                         f"{r['manager_async_save_finished_seconds']} | "
                         f"{r['store_flipped_byte']} | {r['manager_flipped_byte']} |")
    if "torch" in details and "torch" in details["torch"]:
        t = details["torch"]
        lines += ["", f"torch: {t['model']} width {t['width']} batch {t['batch']}, "
                  f"{t['torch_info']['torch']} on {t['torch_info']['device']} "
                  f"({t['torch_info']['threads']} threads): PyTorch "
                  f"{t['torch']['images_per_second']} img/s, lrr_jax "
                  f"{t['lrr_jax']['images_per_second']} img/s."]
    return "\n".join(lines) + "\n"
