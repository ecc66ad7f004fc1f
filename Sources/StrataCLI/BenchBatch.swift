import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct BenchBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-batch",
        abstract: "Aggregate decode tokens/s at several batch sizes (continuous batching, paged KV).")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json, safetensors) or GGUF file.") var model: String
    @Option(name: .customLong("batches"), parsing: .upToNextOption, help: "Batch sizes: 1,4,16 or 1 4 16.") var batchLists: [IntList] = [IntList([1, 4, 16, 64])]
    var batches: [Int] { IntList.all(batchLists) }
    @Option(help: "Prompt tokens per request.") var prompt = 32
    @Option(help: "Generated tokens per request.") var gen = 32
    @Option(help: "Repeats per batch size (medians).") var repeats = 3
    @Flag(help: "One JSON line per batch size instead of a table.") var json = false
    @Option(name: .customLong("step-window"), help: "Also print the median decode-step time over each window of this many steps (does a step's time grow with the position?).") var stepWindow: Int?
    @Option(help: "Where the weights live: tiered (read into the process's memory, huge pages asked for, as planned runs and the server place them) or mmap (views of the mapped files).") var weights = "tiered"
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func run() throws {
        try threads.apply()
        let loaded = try LoadedModel(directory: model, weights: parseWeights(weights))
        let spec = loaded.spec
        let kvType = try kv.type(spec)
        let summary = try CheckpointSummary(folder: loaded.folder)
        guard batches.allSatisfy({ $0 >= 1 }) else { throw ValidationError("batch sizes must be positive") }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        // Repeat-major, the order of the batch sizes reversed on every other repeat: this host's
        // memory bandwidth swings by 2x for seconds at a time, and running all repeats of batch 1
        // before those of batch 16 let one burst set the ratio (docs/benchmarks.md, "Batch sizes
        // interleaved").
        var rates = [[Double]](repeating: [], count: batches.count)
        for r in 0..<repeats {
            let order = r % 2 == 0 ? Array(batches.indices) : Array(batches.indices.reversed())
            for bi in order {
                let b = batches[bi]
                eprint("batch \(b): repeat \(r + 1)/\(repeats)")
                let requests = (0..<b).map { i in
                    GenerationRequest(prompt: (0..<prompt).map { ($0 * 7919 + i * 104729 + r) % spec.vocabSize },
                                      parameters: SamplingParameters(temperature: 0, maxTokens: gen, stopAtEOS: false))
                }
                let blocks = b * ((prompt + gen + 16) / 16 + 1)
                let engine = BatchEngine(loaded: loaded, config: .init(blocks: blocks, blockSize: 16, maxBatch: max(b, 1), kvType: kvType))
                var stepTimes: [Double] = []
                var last = 0.0
                if stepWindow != nil {
                    stepTimes.reserveCapacity(gen + 8)
                    engine.afterStep = { _ in let t = now(); if last > 0 { stepTimes.append(t - last) }; last = t }
                }
                _ = try engine.run(requests)
                if let w = stepWindow, w > 0, r == 0 {
                    // step k of the run decodes position prompt + k (one prefill step first)
                    print("batch \(b): median decode-step time by position (window \(w) steps)")
                    print("| positions | ms per step |")
                    print("|---|---:|")
                    for start in stride(from: 0, to: stepTimes.count, by: w) {
                        let win = Array(stepTimes[start..<min(stepTimes.count, start + w)])
                        print(String(format: "| %d-%d | %.3f |", prompt + start + 1, prompt + start + win.count, median(win) * 1e3))
                    }
                }
                rates[bi].append(engine.stats.decodeTokensPerSecond)
            }
        }
        var rows: [(Int, Double, Double, Double)] = []
        for (bi, b) in batches.enumerated() {
            let med = median(rates[bi])
            rows.append((b, med, (rates[bi].max()! - rates[bi].min()!) / 2, med / max(rows.first?.1 ?? med, 1e-9)))
            if json {
                try printJSON(["batch": b, "decode_tokens_per_second": med, "spread": rows.last!.2, "vs_batch_1": rows.last!.3])
            }
        }
        if json { return }
        print("model: \(spec.architecture) \(String(format: "%.0f", Double(summary.parameters) / 1e6))M params, weights \(formatBytes(summary.totalBytes)), threads \(Threads.count), prompt \(prompt), generated \(gen)")
        print("| batch | aggregate decode tokens/s (median of \(repeats)) | ± | per sequence | vs batch 1 |")
        print("|---:|---:|---:|---:|---:|")
        for (b, r, sp, x) in rows {
            print(String(format: "| %d | %.2f | %.2f | %.2f | %.2fx |", b, r, sp, r / Double(b), x))
        }
    }
}
