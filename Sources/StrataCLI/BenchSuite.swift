import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

/// `strata bench-suite`: every end-to-end scenario, one results folder
/// (`results.json`, `summary.md`, SVG plots), and `--compare` against an earlier one.
struct BenchSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-suite",
        abstract: "Run the benchmark scenarios; write bench-results/<timestamp>/{results.json,summary.md,*.svg}.")
    @Flag(help: "Smaller presets and fewer repeats (about 3 minutes).") var quick = false
    @Option(help: "Folder for results.") var out = "bench-results"
    @Option(help: "Runs of plan and of rule per RAM-budget configuration (default: 3, --quick 1).") var sweepRepeats: Int?
    @Option(help: "An earlier results folder to compare with.") var compare: String?
    @Flag(name: .customLong("update-profile"), help: "Also make the profile this suite measured the user's (~/.cache/strata/profile.json); by default the suite keeps its own in its results folder.") var updateProfile = false
    @Option(help: "gemm-compare binary (built by make bench).") var gemmCompare = "Benchmarks/.build/release/gemm-compare"

    var exe: String { CommandLine.arguments[0] }

    /// scripts/run-in-memcg.sh found from the executable (…/.build/release/strata -> the
    /// repository's scripts/), the current directory, or STRATA_SCRIPTS, so the suite runs from
    /// anywhere.
    static func helper(_ name: String) throws -> String {
        var candidates: [String] = []
        if let d = ProcessInfo.processInfo.environment["STRATA_SCRIPTS"] { candidates.append((d as NSString).appendingPathComponent(name)) }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.appendingPathComponent("scripts/\(name)").path)
            dir = dir.deletingLastPathComponent()
        }
        candidates.append(FileManager.default.currentDirectoryPath + "/scripts/" + name)
        guard let hit = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("cannot find scripts/\(name) (looked in \(candidates.joined(separator: ", "))); set STRATA_SCRIPTS")
        }
        return hit
    }

    func run() throws {
        let memcgScript = try BenchSuite.helper("run-in-memcg.sh")
        let t0 = now()
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "-")
        let dir = (out as NSString).appendingPathComponent(stamp)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // the suite measures and keeps its own profile (its runs inherit STRATA_PROFILE); the
        // user's ~/.cache/strata/profile.json changes only with --update-profile
        let suiteProfile = URL(fileURLWithPath: dir).standardizedFileURL.appendingPathComponent("profile.json").path
        setenv("STRATA_PROFILE", suiteProfile, 1)
        let preset = quick ? "smollm-135m" : "tinyllama-1.1b"
        let repeats = quick ? 2 : 3
        var steps = ["machine", "gemm", "pp/tg", "batch sweep", "RAM-budget sweep"]
        if compare != nil { steps.append("compare") }
        var stepIndex = 0
        func progress(_ what: String) {
            stepIndex += 1
            eprint(String(format: "[bench %d/%d, %.0f s] %@", stepIndex, steps.count, now() - t0, what as NSString))
        }
        var results: [String: Any] = ["timestamp": stamp, "quick": quick, "preset": preset]

        progress("machine info")
        let info = MachineInfo.current()
        var machine: [String: Any] = [:]
        machine["cpu"] = info.cpu
        machine["cores"] = info.cores
        machine["threads"] = info.threads
        machine["memory_bytes"] = info.memoryBytes
        machine["openblas_core"] = info.openBLASCore
        machine["openblas_config"] = info.openBLASConfig
        let swiftVersion: String = (try? shell(["swift", "--version"]))?.split(separator: "\n").first.map(String.init) ?? "unknown"
        machine["swift"] = swiftVersion
        let df: String = (try? shell(["df", "-h", "."]))?.split(separator: "\n").last.map(String.init) ?? "unknown"
        machine["disk"] = df
        let commit: String = (try? shell(["git", "rev-parse", "--short", "HEAD"]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        machine["commit"] = commit
        results["machine"] = machine

        progress("GEMM: Strata's wrapper vs raw cblas_sgemm (\(gemmCompare))")
        var gemm: [[String: Any]] = []
        if FileManager.default.isExecutableFile(atPath: gemmCompare) {
            let text = try shell([gemmCompare, quick ? "3" : "7"])
            for line in text.split(separator: "\n") where line.hasPrefix("| ") && !line.contains("shape") {
                let c = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
                if c.count >= 5, let s = Double(c[1]), let r = Double(c[2]), let ratio = Double(c[3]) {
                    gemm.append(["shape": c[0], "strata_gflops": s, "raw_gflops": r, "ratio": ratio, "path": c[4]])
                }
            }
        } else {
            eprint("  (skipped: \(gemmCompare) not built; make bench builds it)")
        }
        results["gemm"] = gemm

        // the model of every scenario: the preset in f32 (TinyLlama-1.1B: 4.4 GB)
        let f32Model = ".build/bench-models/\(preset)-f32"
        if !FileManager.default.fileExists(atPath: f32Model + "/model.safetensors") {
            _ = try shell([exe, "synth", "--preset", preset, "--dtype", "f32", "--out", f32Model])
        }

        progress("prompt processing and decode, all in RAM (\(preset) f32)")
        let pp = quick ? 128 : 512, tg = quick ? 32 : 128
        let ppJSON = try shell([exe, "bench-model", "--model", f32Model, "--prompt", "\(pp)", "--gen", "\(tg)", "--repeats", "\(repeats)", "--json"])
        let model = try JSONSerialization.jsonObject(with: Data(ppJSON.utf8)) as? [String: Any] ?? [:]
        results["model"] = model

        progress("batch sweep (continuous batching, paged KV), f32 and bf16 weights")
        let batches = quick ? [1, 2, 4, 8, 16] : [1, 2, 4, 8, 16, 64]
        func batchSweep(_ model: String, extra: [String] = []) throws -> [[String: Any]] {
            var args = [exe, "bench-batch", "--model", model, "--repeats", "\(quick ? 1 : 3)", "--prompt", "32", "--gen", "16", "--json"] + extra
            for b in batches { args += ["--batches", "\(b)"] }
            return try shell(args).split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }
        let batchRows = try batchSweep(f32Model)
        results["batch"] = batchRows
        let bf16Model = ".build/bench-models/\(preset)-bf16"
        if !FileManager.default.fileExists(atPath: bf16Model + "/model.safetensors") {
            _ = try shell([exe, "synth", "--preset", preset, "--dtype", "bf16", "--out", bf16Model])
        }
        results["batch_bf16"] = try batchSweep(bf16Model)
        // and with bf16 products for steps of 9+ sequences (`--prefill16 bf16`), where the CPU has them
        if Kernels.bf16GEMMSupported { results["batch_bf16_products"] = try batchSweep(bf16Model, extra: ["--prefill16", "bf16"]) }

        // quantized GGUF files of the same model (strata quantize), pp / tg and the batch sweep
        let schemes = quick ? ["q8_0"] : ["q8_0", "q4_k_m"]
        progress("quantized weights (\(schemes.joined(separator: ", ")) GGUF): prompt processing, decode, batches")
        var quantized: [[String: Any]] = []
        for scheme in schemes {
            let file = ".build/bench-models/\(preset)-\(scheme).gguf"
            if !FileManager.default.fileExists(atPath: file) {
                _ = try shell([exe, "quantize", "--model", f32Model, "--type", scheme, "--out", file])
            }
            let json = try shell([exe, "bench-model", "--model", file, "--prompt", "\(pp)", "--gen", "\(tg)", "--repeats", "\(repeats)", "--json"])
            let m = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] ?? [:]
            quantized.append(["scheme": scheme, "model": m, "batch": try batchSweep(file)])
        }
        results["quantized"] = quantized

        // the server: concurrent streaming clients over loopback against strata serve (in process)
        progress("serving: bench-serve at 1, 4 and 16 clients on the bf16 model")
        let serveOut = NSTemporaryDirectory() + "strata-bench-serve-\(getpid()).json"
        _ = try shell([exe, "bench-serve", "--model", bf16Model, "--clients", "1,4,16", "--requests-per-client", quick ? "1" : "2",
                       "--prompt-tokens", "32", "--max-tokens", quick ? "64" : "128", "--out", serveOut])
        results["serve"] = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: serveOut)))) ?? []
        try? FileManager.default.removeItem(atPath: serveOut)

        progress("RAM-budget sweep: planned, rule-placed and mmap runs, each in a memory cgroup, page cache dropped")
        _ = try ModelRegistry.spec(directory: f32Model)
        let f32Inventory = try WeightInventory(directory: f32Model)
        let weights = f32Inventory.totalBytes
        let modelFile = f32Model + "/model.safetensors"
        // one read per layer, as the engine streams it
        let layerRead = max(4096, (f32Inventory.layerBytes.max() ?? 0) / 4096 * 4096)
        // the planner's compute figures measured now, by this build (a cached profile may be
        // from older code or another hour of this shared machine); the disk figure follows below
        progress("hardware profile (the planner's input), measured afresh")
        try Profiler.save(try Profiler.measure(diskPath: dir, log: { eprint("  " + $0) }))
        let budgets: [Int] = quick ? [400 << 20, 1 << 30] : [1 << 30, 2 << 30, 8 << 30]
        let sweepBatches = quick ? [1, 4] : [1, 16]
        let gen = quick ? 4 : 8
        // plan and rule run `sweepRepeats` times each, alternating which goes first (this VM's
        // disk speed drifts run to run); mmap once
        let sweepRepeats = max(1, self.sweepRepeats ?? (quick ? 1 : 3))
        var sweep: [[String: Any]] = []
        var diskRates: [Double] = []
        let total = budgets.count * sweepBatches.count * (2 * sweepRepeats + 1)
        var n = 0
        for budget in budgets {
            for batch in sweepBatches {
                let prompts = (dir as NSString).appendingPathComponent("prompts-\(batch).jsonl")
                let lines = (0..<batch).map { i in "{\"ids\": [" + (0..<64).map { String(100 + i + $0) }.joined(separator: ",") + "], \"max_tokens\": \(gen), \"temperature\": 0}" }
                try lines.joined(separator: "\n").write(toFile: prompts, atomically: true, encoding: .utf8)
                // the planner's disk input: the model file itself read as the engine streams it,
                // just before this configuration (a fresh scratch file reads faster on this VM)
                // page cache dropped first: O_DIRECT reads of a file whose pages are cached (the
                // batch sweep and mmap runs leave them) measured 394 MB/s here instead of 2.2 GB/s
                dropCaches()
                // the median of five 1 GiB reads spread over the file (single reads here vary by 15%)
                let readBytes = min(1 << 30, weights / 4096 * 4096)
                let disk = median(try (0..<5).map { i in
                    try Profiler.fileReadBandwidth(path: modelFile, offset: (weights - readBytes) / 4 * i / 4096 * 4096, bytes: readBytes, readChunk: layerRead)
                })
                diskRates.append(disk)
                // and the compute figures, measured again now: this shared VM's speed drifts
                // (the layer pass at 64 rows took 43.7-49.9 ms per layer in five profiles on 2026-11-26)
                // (the first configuration comes right after the full profile: its samples stand)
                let fresh = diskRates.count == 1 ? Profiler.cached() : nil
                let (samples, ew, overhead) = try fresh.map { ($0.gemm, $0.elementwiseSecondsPerRow ?? 0, $0.passOverheadPerLayer ?? 0) } ?? Profiler.computeSamples()
                let layer64 = samples.first { $0.m == 64 }.map { $0.seconds + ew * 64 } ?? 0
                if var prof = Profiler.cached() {
                    prof.diskReadBytesPerSecond = disk
                    prof.gemm = samples
                    prof.elementwiseSecondsPerRow = ew
                    prof.passOverheadPerLayer = overhead
                    try Profiler.save(prof)
                }
                eprint(String(format: "  compute now: a layer pass at 64 rows %.2f ms", layer64 * 1e3))
                eprint(String(format: "  disk read of %@ now: %.0f MB/s (the planner's figure for this configuration)", modelFile as NSString, disk / 1e6))
                var order: [String] = []
                for r in 0..<sweepRepeats { order += (r + n / (2 * sweepRepeats + 1)) % 2 == 0 ? ["plan", "rule"] : ["rule", "plan"] }
                order.append("mmap")
                var repeatOf: [String: Int] = [:]
                for mode in order {
                    n += 1
                    let rep = repeatOf[mode, default: 0]
                    repeatOf[mode] = rep + 1
                    eprint("  [\(n)/\(total)] budget \(formatBytes(budget)), batch \(batch), \(mode) #\(rep + 1) (elapsed \(Int(now() - t0)) s)")
                    dropCaches()
                    let report = (dir as NSString).appendingPathComponent("report-\(budget >> 20)MiB-b\(batch)-\(mode)-\(rep + 1).json")
                    var cmd = [memcgScript, "\(budget)", exe, "generate", "--model", f32Model, "--prompts-file", prompts,
                               "--ignore-eos", "--ram-budget", "\(budget)", "--report", report, "--max-batch", "\(batch)"]
                    switch mode {
                    case "plan": cmd += ["--kv-disk", (dir as NSString).appendingPathComponent("kv.swap"), "--kv-disk-size", "256MiB"]
                    case "rule": cmd += ["--no-plan"]
                    default: cmd += ["--weights", "mmap"]
                    }
                    let log = (try? shell(cmd, allowFailure: true)) ?? ""
                    var row: [String: Any] = ["budget_bytes": budget, "batch": batch, "mode": mode, "repeat": rep + 1, "disk_read_before": disk,
                                               "layer_pass_64_rows_seconds_before": layer64]
                    if let d = FileManager.default.contents(atPath: report), let r = try? JSONSerialization.jsonObject(with: Data(d)) as? [String: Any] {
                        row["measured"] = r["measured"]; row["predicted"] = r["predicted"]; row["error"] = r["error"]; row["placement"] = r["placement"]
                        row["predicted_rule_aggregate_tokens_per_second"] = r["predicted_rule_aggregate_tokens_per_second"]
                    } else {
                        row["failed"] = String(log.suffix(400))
                    }
                    if let peak = log.range(of: "peak memory use of the cgroup: ") {
                        row["cgroup_peak_bytes"] = Int(log[peak.upperBound...].prefix { $0.isNumber })
                    }
                    row["killed"] = log.contains("exit status 137") || log.contains("Killed")
                    row["no_cgroup"] = log.contains("no memory cgroup can be made")
                    sweep.append(row)
                }
            }
        }
        results["disk_read_bytes_per_second"] = median(diskRates)
        try? FileManager.default.removeItem(atPath: (dir as NSString).appendingPathComponent("kv.swap"))
        results["budget_sweep"] = sweep
        results["weights_bytes"] = weights
        results["profile"] = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(Profiler.cached()))) ?? NSNull()
        results["seconds"] = now() - t0

        let json = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
        try json.write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("results.json")))
        // a sweep run that failed for another reason than the memory cgroup killing it is a failed suite
        let broken = sweep.filter { $0["failed"] != nil && $0["killed"] as? Bool != true }

        let summary = BenchRender.summary(results)
        try summary.write(toFile: (dir as NSString).appendingPathComponent("summary.md"), atomically: true, encoding: .utf8)
        try BenchRender.budgetSVG(sweep).write(toFile: (dir as NSString).appendingPathComponent("tokens-vs-budget.svg"), atomically: true, encoding: .utf8)
        try BenchRender.batchSVG(batchRows).write(toFile: (dir as NSString).appendingPathComponent("tokens-vs-batch.svg"), atomically: true, encoding: .utf8)
        try BenchRender.gemmSVG(gemm).write(toFile: (dir as NSString).appendingPathComponent("gemm-vs-raw.svg"), atomically: true, encoding: .utf8)
        print(summary)
        if let compare {
            progress("compare with \(compare)")
            print(try BenchRender.compare(old: compare, new: results))
        }
        eprint(String(format: "results in %@ (%.0f s)", dir as NSString, now() - t0))
        if updateProfile, let data = FileManager.default.contents(atPath: suiteProfile) {
            try FileManager.default.createDirectory(atPath: (Profiler.userCachePath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: Profiler.userCachePath))
            eprint("profile copied to \(Profiler.userCachePath)")
        }
        if !broken.isEmpty {
            eprint("\(broken.count) of \(sweep.count) RAM-budget runs failed (see \"failed\" in results.json)")
            throw ExitCode(1)
        }
    }

    func dropCaches() {
        sync()
        if let fh = FileHandle(forWritingAtPath: "/proc/sys/vm/drop_caches") { fh.write(Data("1\n".utf8)); try? fh.close() }
    }

    /// Runs a command; returns stdout (stderr passes through for progress).
    func shell(_ args: [String], allowFailure: Bool = false) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        // stderr goes to a file: progress of the child is shown after it ends, and parsed when needed
        let errPath = NSTemporaryDirectory() + "strata-bench-\(FileIO.processID)-\(UUID().uuidString).err"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let errText = FileManager.default.contents(atPath: errPath) ?? Data()
        let out = String(decoding: data, as: UTF8.self)
        if p.terminationStatus != 0 && !allowFailure {
            throw ValidationError("\(args.joined(separator: " ")) failed (\(p.terminationStatus)): \(String(decoding: errText, as: UTF8.self).suffix(500))")
        }
        return out + (allowFailure ? String(decoding: errText, as: UTF8.self) : "")
    }
}

enum BenchRender {
    static func num(_ a: Any?) -> Double { (a as? Double) ?? (a as? Int).map(Double.init) ?? (a as? NSNumber)?.doubleValue ?? 0 }

    static func summary(_ r: [String: Any]) -> String {
        var s = "# Strata benchmark \(r["timestamp"] ?? "")\n\n"
        if let m = r["machine"] as? [String: Any] {
            s += "Machine: \(m["cpu"] ?? ""), \(m["cores"] ?? "") cores, \(m["threads"] ?? "") threads, OpenBLAS \(m["openblas_core"] ?? "") (\(m["openblas_config"] ?? "")), \(m["swift"] ?? ""); commit \(m["commit"] ?? ""); disk: \(m["disk"] ?? "")\n\n"
        }
        if let g = r["gemm"] as? [[String: Any]], !g.isEmpty {
            s += "## GEMM (median, interleaved with raw cblas_sgemm)\n\n| shape | Strata GFLOP/s | raw GFLOP/s | Strata / raw |\n|---|---:|---:|---:|\n"
            for x in g { s += String(format: "| %@ | %.1f | %.1f | %.3f |\n", (x["shape"] as? String ?? "") as NSString, num(x["strata_gflops"]), num(x["raw_gflops"]), num(x["ratio"])) }
            s += "\n"
        }
        if let m = r["model"] as? [String: Any], !m.isEmpty {
            s += "## Model \(r["preset"] ?? "") f32, all in RAM (llama-bench style)\n\n| test | tokens/s (median) | ± | bound | fraction of bound |\n|---|---:|---:|---:|---:|\n"
            s += String(format: "| pp%d | %.2f | %.2f | %.2f (GEMM) | %.1f%% |\n", Int(num(m["pp_tokens"])), num(m["pp_tokens_per_second"]), num(m["pp_spread"]), num(m["pp_bound"]), 100 * num(m["pp_fraction_of_bound"]))
            s += String(format: "| tg%d | %.2f | %.2f | %.2f (memory bandwidth) | %.1f%% |\n\n", Int(num(m["tg_tokens"])), num(m["tg_tokens_per_second"]), num(m["tg_spread"]), num(m["tg_bound"]), 100 * num(m["tg_fraction_of_bound"]))
        }
        if let b = r["batch"] as? [[String: Any]], !b.isEmpty {
            let tgBound = num((r["model"] as? [String: Any])?["tg_bound"])
            s += "## Batch sweep (aggregate decode tokens/s, f32 weights)\n\n| batch | tokens/s (median) | ± | vs batch 1 | fraction of batch x bandwidth bound |\n|---:|---:|---:|---:|---:|\n"
            for x in b {
                let bb = num(x["batch"])
                s += String(format: "| %d | %.2f | %.2f | %.2fx | %.1f%% |\n", Int(bb), num(x["decode_tokens_per_second"]), num(x["spread"]), num(x["vs_batch_1"]),
                            tgBound > 0 ? 100 * num(x["decode_tokens_per_second"]) / (bb * tgBound) : 0)
            }
            s += "\n"
        }
        for (key, title) in [("batch_bf16", "bf16 weights"), ("batch_bf16_products", "bf16 weights, `--prefill16 bf16` (bf16 products from 9 rows)")] {
            guard let b = r[key] as? [[String: Any]], !b.isEmpty else { continue }
            s += "## Batch sweep (aggregate decode tokens/s, \(title))\n\n| batch | tokens/s (median) | ± | vs batch 1 |\n|---:|---:|---:|---:|\n"
            for x in b {
                s += String(format: "| %d | %.2f | %.2f | %.2fx |\n", Int(num(x["batch"])), num(x["decode_tokens_per_second"]), num(x["spread"]), num(x["vs_batch_1"]))
            }
            s += "\n"
        }
        if let q = r["quantized"] as? [[String: Any]], !q.isEmpty {
            s += "## Quantized weights (strata quantize of the same model, GGUF, 8-bit activations)\n\n| weights | pp t/s | tg t/s | tg fraction of bound | batch: aggregate t/s (vs batch 1) |\n|---|---:|---:|---:|---|\n"
            for x in q {
                let m = x["model"] as? [String: Any] ?? [:]
                let b = (x["batch"] as? [[String: Any]] ?? []).map { String(format: "%d: %.1f (%.2fx)", Int(num($0["batch"])), num($0["decode_tokens_per_second"]), num($0["vs_batch_1"])) }
                s += String(format: "| %@ | %.2f | %.2f | %.1f%% | %@ |\n", (x["scheme"] as? String ?? "") as NSString, num(m["pp_tokens_per_second"]), num(m["tg_tokens_per_second"]),
                            100 * num(m["tg_fraction_of_bound"]), b.joined(separator: "; ") as NSString)
            }
            s += "\n"
        }
        if let sv = r["serve"] as? [[String: Any]], !sv.isEmpty {
            s += "## Serving (strata bench-serve, bf16, streamed text completions over loopback, 32 prompt tokens each)\n\n| clients | requests | req/s | output t/s (vs 1 client) | TTFT p50 / p99 ms | ITL p50 / p99 ms |\n|---:|---:|---:|---|---|---|\n"
            let one = sv.first { Int(num($0["clients"])) == 1 }.map { num($0["output_tokens_per_second"]) } ?? 0
            for x in sv {
                let t = num(x["output_tokens_per_second"])
                s += String(format: "| %d | %d | %.2f | %.1f (%.2fx) | %.0f / %.0f | %.1f / %.1f |\n", Int(num(x["clients"])), Int(num(x["requests"])), num(x["requests_per_second"]),
                            t, one > 0 ? t / one : 0, num(x["ttft_p50_ms"]), num(x["ttft_p99_ms"]), num(x["itl_p50_ms"]), num(x["itl_p99_ms"]))
            }
            s += "\n"
        }
        if let w = r["budget_sweep"] as? [[String: Any]], !w.isEmpty {
            let groups = sweepGroups(w)
            s += "## RAM-budget sweep (\(r["preset"] ?? "") f32, \(formatBytes(Int(num(r["weights_bytes"])))) of weights)\n\n"
            s += String(format: "Each run in a memory cgroup limited to the budget, page cache dropped before. plan: the planner's placement (KV disk tier on); rule: the fill-the-budget rule (`--no-plan`); mmap: `--weights mmap`. Before each configuration the model file is read as the engine streams it (O_DIRECT, one read per layer's bytes, the median of five 1 GiB reads) and that rate is the planner's disk figure (median over configurations: %.0f MB/s); the profile's compute figures (a layer's forward pass at 1 ... 512 rows) are measured again just before each configuration too. Figures are medians over the runs of each mode (plan and rule alternate which goes first); step and prefill: measured (predicted, error of the median).\n\n", num(r["disk_read_bytes_per_second"]) / 1e6)
            s += "| budget | batch | mode | runs | streamed | decode t/s per seq | aggregate t/s | disk MB/s before / in run | step s (pred, err) | prefill s (pred, err) | cgroup peak | killed |\n|---|---:|---|---:|---:|---:|---:|---|---|---|---:|---|\n"
            var within = 0, planned = 0
            for g in groups {
                let b = g.batch
                let streamed = g.mode == "mmap" ? "(mmap)" : "\(g.streamed)"
                func cell(_ v: Double, _ pv: Double) -> String { pv > 0 ? String(format: "%.2f (%.2f, %+.0f%%)", v, pv, 100 * (v - pv) / pv) : String(format: "%.2f", v) }
                s += "| \(formatBytes(g.budget)) | \(b) | \(g.mode) | \(g.runs)\(g.failed > 0 ? " (\(g.failed) failed)" : "") | \(streamed) | "
                    + String(format: "%.3f | %.3f | %.0f / %.0f | ", g.perSeq, g.aggregate, g.diskBefore / 1e6, g.diskInRun / 1e6)
                    + cell(g.step, g.predStep) + " | " + cell(g.prefill, g.predPrefill) + " | "
                    + (g.peak > 0 ? formatBytes(g.peak) : "-") + " | " + (g.killed ? "yes" : "no") + " |\n"
                if g.mode == "plan" && g.predStep > 0 {
                    planned += 1
                    if abs(g.step - g.predStep) <= 0.15 * g.predStep && abs(g.prefill - g.predPrefill) <= 0.15 * g.predPrefill { within += 1 }
                }
            }
            s += "\nPlanner accuracy: step and prefill both within 15% of the medians in \(within) of \(planned) planned configurations.\n"
            // the planner against the rule, per configuration
            s += "\nPlanner vs rule (aggregate tokens/s, medians; per-pair ratios in the order run; predicted: the planner's model of both placements; placement: whether the plan's streamed layers and prefetch depth are the rule's):\n\n| budget | batch | placement | plan | rule | plan / rule | pair ratios | predicted plan / rule |\n|---|---:|---|---:|---:|---:|---|---:|\n"
            for g in groups where g.mode == "plan" {
                guard let rule = groups.first(where: { $0.mode == "rule" && $0.budget == g.budget && $0.batch == g.batch }) else { continue }
                let pairs = zip(g.aggregates, rule.aggregates).map { String(format: "%.2f", $0 / max(1e-9, $1)) }.joined(separator: ", ")
                s += "| \(formatBytes(g.budget)) | \(g.batch) | \(g.placement == rule.placement ? "the rule's" : "differs") | " + String(format: "%.3f | %.3f | %.2fx | %@ | %@ |\n", g.aggregate, rule.aggregate, g.aggregate / max(1e-9, rule.aggregate),
                                                                     pairs as NSString, (g.predRule > 0 ? String(format: "%.2fx", g.predAggregate / g.predRule) : "-") as NSString)
            }
            s += "\n"
        }
        s += String(format: "Suite time: %.0f s.\n", num(r["seconds"]))
        return s
    }

    static func svgPlot(title: String, xLabel: String, series: [(String, String, [(Double, Double)])], logX: Bool = false) -> String {
        let w = 560.0, h = 320.0, l = 60.0, t = 30.0, pw = 470.0, ph = 240.0
        let all = series.flatMap { $0.2 }
        guard !all.isEmpty else { return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" height=\"40\"><text x=\"4\" y=\"20\">no data</text></svg>\n" }
        func fx(_ v: Double) -> Double { logX ? log2(max(v, 1e-9)) : v }
        let minX = all.map { fx($0.0) }.min()!, maxX = all.map { fx($0.0) }.max()!
        let maxY = max(1e-9, all.map { $0.1 }.max()! * 1.1)
        func x(_ v: Double) -> Double { l + (maxX > minX ? (fx(v) - minX) / (maxX - minX) : 0.5) * pw }
        func y(_ v: Double) -> Double { t + ph - v / maxY * ph }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<text x=\"\(l)\" y=\"18\">\(title)</text>\n<rect x=\"\(l)\" y=\"\(t)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
        for (k, (name, color, pts)) in series.enumerated() {
            let sorted = pts.sorted { $0.0 < $1.0 }
            s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"" + sorted.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ") + "\"/>\n"
            for p in sorted { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>\n", x(p.0), y(p.1), color as NSString) }
            s += "<text x=\"\(l + 10)\" y=\"\(Int(t + 16 + 14 * Double(k)))\" fill=\"\(color)\">\(name)</text>\n"
        }
        s += String(format: "<text x=\"4\" y=\"%.0f\">%.2f</text><text x=\"4\" y=\"%.0f\">0</text>\n", t + 10, maxY, t + ph)
        s += "<text x=\"\(l)\" y=\"\(Int(t + ph + 18))\">\(xLabel)</text>\n</svg>\n"
        return s
    }

    /// The sweep's runs of one budget, batch and mode, summarized by medians.
    struct SweepGroup {
        var budget: Int, batch: Int, mode: String
        var runs = 0, failed = 0, streamed = 0, peak = 0, killed = false
        var perSeq = 0.0, aggregate = 0.0, aggregates: [Double] = [], diskBefore = 0.0, diskInRun = 0.0
        var step = 0.0, predStep = 0.0, prefill = 0.0, predPrefill = 0.0, predAggregate = 0.0, predRule = 0.0
        var predPerSeq = 0.0
        /// streamed layers and prefetch depth of the first run (the placement)
        var placement = ""
    }

    static func sweepGroups(_ w: [[String: Any]]) -> [SweepGroup] {
        var keys: [String] = []
        var rows: [String: [[String: Any]]] = [:]
        for x in w {
            let k = "\(Int(num(x["budget_bytes"])))/\(Int(num(x["batch"])))/\(x["mode"] ?? "")"
            if rows[k] == nil { keys.append(k) }
            rows[k, default: []].append(x)
        }
        func med(_ v: [Double]) -> Double { v.isEmpty ? 0 : median(v) }
        return keys.map { k in
            let xs = rows[k]!
            var g = SweepGroup(budget: Int(num(xs[0]["budget_bytes"])), batch: Int(num(xs[0]["batch"])), mode: xs[0]["mode"] as? String ?? "")
            let ok = xs.filter { $0["measured"] is [String: Any] }
            g.runs = xs.count; g.failed = xs.count - ok.count
            g.killed = xs.contains { $0["killed"] as? Bool == true }
            g.peak = xs.map { Int(num($0["cgroup_peak_bytes"])) }.max() ?? 0
            let pl = ok.first?["placement"] as? [String: Any]
            g.streamed = (pl?["streamed_layers"] as? [Any])?.count ?? 0
            g.placement = g.streamed == 0 ? "all resident" : "\((pl?["streamed_layers"] as? [Any])?.map { "\($0)" } ?? []) depth \(Int(num(pl?["prefetch_depth"])))"
            let m = ok.map { $0["measured"] as! [String: Any] }, p = ok.compactMap { $0["predicted"] as? [String: Any] }
            g.perSeq = med(m.map { num($0["decode_tokens_per_second"]) })
            g.aggregates = m.map { num($0["aggregate_tokens_per_second"]) }
            g.aggregate = med(g.aggregates)
            g.diskBefore = med(xs.map { num($0["disk_read_before"]) })
            g.diskInRun = med(m.map { num($0["disk_read_bytes_per_second"]) }.filter { $0 > 0 })
            g.step = med(m.compactMap { num($0["decode_tokens_per_second"]) > 0 ? 1 / num($0["decode_tokens_per_second"]) : nil })
            g.prefill = med(m.compactMap { num($0["prefill_tokens_per_second"]) > 0 ? num($0["prompt_tokens"]) / num($0["prefill_tokens_per_second"]) : nil })
            g.predStep = med(p.compactMap { num($0["decode_tokens_per_second"]) > 0 ? 1 / num($0["decode_tokens_per_second"]) : nil })
            g.predPerSeq = med(p.map { num($0["decode_tokens_per_second"]) })
            // predicted prefill seconds: the run's prompt tokens at the predicted prefill rate
            g.predPrefill = med(zip(m, ok.map { $0["predicted"] as? [String: Any] }).compactMap { mx, px in
                guard let px, num(px["prefill_tokens_per_second"]) > 0 else { return nil }
                return num(mx["prompt_tokens"]) / num(px["prefill_tokens_per_second"])
            })
            g.predAggregate = med(p.map { num($0["aggregate_tokens_per_second"]) })
            g.predRule = med(ok.map { num($0["predicted_rule_aggregate_tokens_per_second"]) }.filter { $0 > 0 })
            return g
        }
    }

    static func budgetSVG(_ sweep: [[String: Any]]) -> String {
        let groups = sweepGroups(sweep)
        func pts(_ mode: String, _ predicted: Bool) -> [(Double, Double)] {
            groups.filter { $0.mode == mode && $0.batch == 1 }.map { (Double($0.budget) / 1048576, predicted ? $0.predPerSeq : $0.perSeq) }
                .filter { $0.1 > 0 }
        }
        return svgPlot(title: "batch-1 decode tokens/s vs RAM budget (MiB)", xLabel: "RAM budget, MiB",
                       series: [("planned, measured", "#2f6fb0", pts("plan", false)), ("planned, predicted", "#9bbbe0", pts("plan", true)),
                                ("rule, measured", "#5a9e4b", pts("rule", false)), ("mmap, measured", "#e8871e", pts("mmap", false))])
    }

    static func batchSVG(_ rows: [[String: Any]]) -> String {
        svgPlot(title: "aggregate decode tokens/s vs batch", xLabel: "batch (log2 scale)",
                series: [("measured", "#2f6fb0", rows.map { (num($0["batch"]), num($0["decode_tokens_per_second"])) })], logX: true)
    }

    static func gemmSVG(_ g: [[String: Any]]) -> String {
        let squares = g.filter { ($0["shape"] as? String)?.contains("x") == true && ($0["shape"] as? String)?.hasPrefix("[") == false }
        func size(_ x: [String: Any]) -> Double { Double((x["shape"] as? String ?? "").split(separator: "x").first ?? "") ?? 0 }
        return svgPlot(title: "GEMM GFLOP/s: Strata vs raw cblas_sgemm (square)", xLabel: "matrix size (log2 scale)",
                       series: [("Strata", "#2f6fb0", squares.map { (size($0), num($0["strata_gflops"])) }),
                                ("raw cblas_sgemm", "#e8871e", squares.map { (size($0), num($0["raw_gflops"])) })], logX: true)
    }

    /// Change of each headline figure against an earlier results folder.
    static func compare(old dir: String, new r: [String: Any]) throws -> String {
        guard let d = FileManager.default.contents(atPath: (dir as NSString).appendingPathComponent("results.json")),
              let o = try JSONSerialization.jsonObject(with: d) as? [String: Any] else {
            throw ValidationError("--compare: \(dir)/results.json not found or not JSON")
        }
        func figures(_ x: [String: Any]) -> [String: Double] {
            var f: [String: Double] = [:]
            for g in x["gemm"] as? [[String: Any]] ?? [] { f["gemm \(g["shape"] ?? "") GFLOP/s"] = num(g["strata_gflops"]) }
            if let m = x["model"] as? [String: Any] {
                f["pp tokens/s"] = num(m["pp_tokens_per_second"]); f["tg tokens/s"] = num(m["tg_tokens_per_second"])
            }
            for b in x["batch"] as? [[String: Any]] ?? [] { f["batch \(Int(num(b["batch"]))) tokens/s"] = num(b["decode_tokens_per_second"]) }
            for g in sweepGroups(x["budget_sweep"] as? [[String: Any]] ?? []) where g.aggregate > 0 {
                f["budget \(g.budget >> 20) MiB batch \(g.batch) \(g.mode) aggregate tokens/s"] = g.aggregate
            }
            return f
        }
        let a = figures(o), b = figures(r)
        var s = "## Change from \(dir)\n\n| figure | before | now | change |\n|---|---:|---:|---:|\n"
        for k in Set(a.keys).union(b.keys).sorted() {
            let x = a[k], y = b[k]
            let change = (x != nil && y != nil && x! != 0) ? String(format: "%+.1f%%", 100 * (y! - x!) / x!) : "-"
            s += "| \(k) | \(x.map { String(format: "%.2f", $0) } ?? "-") | \(y.map { String(format: "%.2f", $0) } ?? "-") | \(change) |\n"
        }
        return s
    }
}
