import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-model",
        abstract: "llama-bench-like prompt processing (pp) and decode (tg) speed, beside the machine's bounds measured in the same run.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json, safetensors) or GGUF file.") var model: String
    @Option(name: [.customLong("prompt"), .customShort("p")], help: "Prompt tokens for the pp test (llama-bench's -p).") var prompt = 512
    @Option(name: [.customLong("gen"), .customShort("n")], help: "Generated tokens for the tg test (llama-bench's -n).") var gen = 128
    @Option(name: [.customLong("repeats"), .customShort("r")], help: "Repeats (medians are reported; llama-bench's -r).") var repeats = 3
    @Option(name: [.customLong("depth"), .customShort("d")], help: "Positions already in the KV cache when the tg test starts (llama-bench's -d): random K/V rows written into the cache, no prompt computed. Also times one step's attention alone at that depth against the time to read its KV bytes.") var depth = 0
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @Option(help: "Where the weights live: tiered (read into the process's memory, huge pages asked for, as planned runs and the server place them) or mmap (views of the mapped files).") var weights = "tiered"
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func run() throws {
        try threads.apply()
        guard prompt >= 1, gen >= 1, repeats >= 1 else { throw ValidationError("--prompt, --gen and --repeats must be positive") }
        guard depth >= 0 else { throw ValidationError("--depth must be 0 or more") }
        let loaded = try LoadedModel(directory: model, weights: parseWeights(weights))
        let m = loaded.model
        let spec = m.spec
        let kvType = try kv.type(spec)
        let summary = try CheckpointSummary(folder: loaded.folder)
        let vocab = spec.vocabSize
        let ids = (0..<prompt).map { Int32(($0 * 7919 + 13) % vocab) }
        guard depth + gen <= spec.maxPositions else {
            throw ValidationError("--depth \(depth) + --gen \(gen) passes the model's \(spec.maxPositions) positions")
        }
        let cap = min(spec.maxPositions, max(prompt, depth + gen + 1))
        let slices = min(4, gen)
        // warm up: touch every weight page once (first-touch page faults are not compute)
        do {
            let c = try m.makeCache(capacity: cap, type: kvType)
            _ = try ids.prefix(8).withUnsafeBufferPointer { try m.forward($0, cache: c, allLogits: false) }
        }
        let params = Double(summary.parameters)
        // bytes a decode step reads: every weight except the embedding table (one row is gathered)
        let embedBytes = summary.roles.first { $0.role == "embedding" }?.bytes ?? 0
        let tied = spec.tiedEmbeddings && !summary.roles.contains { $0.role == "lm_head" }
        // a mixture reads k of its E routed experts per layer: the others' bytes are not a token's
        let idle = spec.moe.map { 1 - Double($0.expertsPerToken) / Double($0.experts) } ?? 0
        let expertBytes = Double(summary.roles.first { $0.role == "experts" }?.bytes ?? 0)
        let expertParams = spec.moe.map { Double(3 * spec.hiddenSize * $0.intermediate * $0.experts * $0.sparseLayers.filter { $0 }.count) } ?? 0
        let weightBytes = Double(summary.totalBytes - (tied ? 0 : embedBytes)) - idle * expertBytes
        // and the KV cache up to the step's position (the mean over the tg test)
        let kvTokenBytes = Double(spec.kvBytesPerToken(kvType))
        let decodeBytes = weightBytes + kvTokenBytes * (Double(depth) + Double(gen + 1) / 2)
        // multiply-adds a decode step makes: every weight but the embedding table's (gathered)
        let decodeMACs = Double(summary.parameters - (tied ? 0 : spec.vocabSize * spec.hiddenSize)) - idle * expertParams
        // quantized weights with 8-bit activations: the 8-bit products' peak bounds a compute-bound kernel
        let quantized = summary.dtypes.keys.contains { DType(rawValue: $0.lowercased())?.isQuantized ?? false }
        let q8Peak = quantized && Kernels.activations == .q8 ? Kernels.q8Peak() : 0
        // Each repeat measures its own bounds with its tests (this machine's bandwidth drifts
        // with its neighbours), so each ratio is from one stretch of time; medians are reported.
        // The decode runs in slices between the rounds of the memory-read passes, so the bound
        // is read over the same seconds as the decode it bounds.
        var pp: [Double] = [], tg: [Double] = [], ppB: [Double] = [], tgB: [Double] = [], flopsS: [Double] = [], bwS: [Double] = []
        var attnS: [Double] = [], kvReadS: [Double] = []
        for r in 0..<repeats {
            eprint("repeat \(r + 1)/\(repeats): sgemm bound, pp\(prompt)")
            let flops = Measure.gemmFlops(m: min(prompt, 512), n: spec.intermediateSize, k: spec.hiddenSize, repeats: 3)
            flopsS.append(flops); ppB.append(flops / (2 * (params - idle * expertParams)))
            let c1 = try m.makeCache(capacity: cap, type: kvType)
            let t0 = now()
            _ = try ids.withUnsafeBufferPointer { try m.forward($0, cache: c1, allLogits: false) }
            pp.append(Double(prompt) / (now() - t0))
            eprint("repeat \(r + 1)/\(repeats): tg\(gen) in \(slices) slices between rounds of the memory bandwidth bound")
            let c2 = try m.makeCache(capacity: cap, type: kvType)
            c2.appendRandomPositions(depth, seed: UInt64(r + 1))
            var one: [Int32] = [1]
            var seconds = 0.0, i = 0
            let bw = try Measure.memoryReadBandwidth(bytes: 512 << 20, repeats: slices) { round in
                let end = gen * (round + 1) / slices
                let t = now()
                while i < end {
                    one[0] = Int32((i * 31 + 7) % vocab)
                    _ = try one.withUnsafeBufferPointer { try m.forward($0, cache: c2, allLogits: false) }
                    i += 1
                }
                seconds += now() - t
            }
            bwS.append(bw); tgB.append(bw / decodeBytes)
            tg.append(Double(gen) / seconds)
            if depth > 0 {
                // one step's attention alone (every layer, one query row over the cache's keys)
                let keys = c2.length
                let q = (0..<(spec.heads * spec.headDim)).map { Float(($0 * 37) % 17) / 17 - 0.5 }
                var out = [Float](repeating: 0, count: spec.heads * spec.headDim)
                let layout = BatchLayout(capacity: 1)
                layout.append(sequence: 0, rows: 1, startPosition: keys - 1, logits: .none)
                let steps = 8
                let t = now()
                for _ in 0..<steps {
                    for l in 0..<spec.layers {
                        c2.attend(layer: l, layout: layout, q: q, ldq: q.count, out: &out, ldo: out.count,
                                  attention: AttentionSettings(heads: spec.heads, kvHeads: spec.kvHeads, headDim: spec.headDim))
                    }
                }
                attnS.append((now() - t) / Double(steps))
                kvReadS.append(kvTokenBytes * Double(keys) / bw)
            }
        }
        let flops = median(flopsS), bw = median(bwS)
        let ppBound = median(ppB), tgBound = median(tgB)
        let ppMed = median(pp), tgMed = median(tg)
        let ppFrac = median(zip(pp, ppB).map { $0 / $1 }), tgFrac = median(zip(tg, tgB).map { $0 / $1 })
        let computeBound = q8Peak / decodeMACs
        func spread(_ xs: [Double]) -> Double { (xs.max()! - xs.min()!) / 2 }
        if json {
            try printJSON(["model": model, "threads": Threads.count, "pp_tokens": prompt, "tg_tokens": gen, "repeats": repeats,
                           "pp_tokens_per_second": ppMed, "pp_spread": spread(pp), "tg_tokens_per_second": tgMed, "tg_spread": spread(tg),
                           "sgemm_flops": flops, "memory_read_bytes_per_second": bw, "pp_bound": ppBound, "tg_bound": tgBound,
                           "decode_bytes_per_token": decodeBytes, "parameters": params, "pp_fraction_of_bound": ppFrac, "tg_fraction_of_bound": tgFrac,
                           "q8_peak_multiply_adds_per_second": q8Peak, "q8_compute_bound": computeBound,
                           "pp_fraction_of_q8_peak": q8Peak > 0 ? ppMed / computeBound : 0, "tg_fraction_of_q8_peak": q8Peak > 0 ? tgMed / computeBound : 0,
                           "depth": depth, "kv_type": kvType.rawValue, "kv_bytes_per_token": kvTokenBytes,
                           "attention_seconds_per_step": attnS.isEmpty ? 0 : median(attnS), "kv_read_seconds_per_step": kvReadS.isEmpty ? 0 : median(kvReadS)])
            return
        }
        print("model: \(spec.architecture) \(String(format: "%.0f", params / 1e6))M params, weights \(formatBytes(summary.totalBytes)), threads \(Threads.count)")
        print(String(format: "bounds (same run): sgemm %.1f GFLOP/s -> pp bound %.1f t/s; memory read %.1f GB/s over %@ per token -> tg bound %.2f t/s",
                     flops / 1e9, ppBound, bw / 1e9, formatBytes(Int(decodeBytes)) as NSString, tgBound))
        print("KV cache \(kvType.rawValue): \(formatBytes(Int(kvTokenBytes))) per token; tg at depth \(depth)")
        if !attnS.isEmpty {
            print(String(format: "attention of one step at %d keys (all %d layers): %.2f ms; reading its KV (%@) at the measured bandwidth: %.2f ms; ratio %.2f",
                         depth + gen, spec.layers, 1e3 * median(attnS), formatBytes(Int(kvTokenBytes) * (depth + gen)) as NSString,
                         1e3 * median(kvReadS), median(zip(attnS, kvReadS).map { $0 / $1 })))
        }
        print("| test | tokens/s (median of \(repeats)) | ± | bound | fraction of bound (median of per-repeat ratios) |")
        print("|---|---:|---:|---:|---:|")
        print(String(format: "| pp%d | %.2f | %.2f | %.2f | %.1f%% |", prompt, ppMed, spread(pp), ppBound, 100 * ppFrac))
        print(String(format: "| tg%d%@ | %.2f | %.2f | %.2f | %.1f%% |", gen, (depth > 0 ? " @ d\(depth)" : "") as NSString, tgMed, spread(tg), tgBound, 100 * tgFrac))
        if q8Peak > 0 {
            print(String(format: "8-bit products' peak (vpmaddubsw + vpmaddwd, %d threads): %.1f G multiply-adds/s over %.0f M per token -> compute bound %.2f t/s; pp%d at %.1f%% of it, tg%d at %.1f%%",
                         Threads.count, q8Peak / 1e9, decodeMACs / 1e6, computeBound, prompt, 100 * ppMed / computeBound, gen, 100 * tgMed / computeBound))
        }
    }
}
