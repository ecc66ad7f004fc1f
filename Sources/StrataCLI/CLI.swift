import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

@main
struct StrataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "Run transformer language models on the CPU when memory is the wall.",
        subcommands: [Generate.self, Logits.self, Tokenize.self, Detokenize.self, Inspect.self, Synthesize.self,
                      PlanCommand.self, Profile.self, BenchModel.self, BenchBatch.self, BenchSuite.self, BenchLinear.self, Info.self, MatmulDemo.self]
    )
}

struct ThreadOption: ParsableArguments {
    @Option(name: .long, help: "Threads for OpenBLAS and Strata's loops (default: all cores).")
    var threads: Int?

    func apply() throws {
        if let t = threads {
            guard t >= 1 else { throw ValidationError("--threads must be at least 1, got \(t)") }
            Threads.set(t)
        } else {
            Threads.set(ProcessInfo.processInfo.activeProcessorCount)
        }
    }
}

/// Prints a JSON value on one line (machine-readable output).
func printJSON(_ obj: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func eprint(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// "1,2,3" -> [1, 2, 3]
func parseIDs(_ s: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    return try parts.map {
        guard let v = Int($0) else { throw ValidationError("--ids: '\($0)' is not an integer") }
        return v
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Encode text; prints {\"ids\":[...]}.")
    @Option(help: "Model folder (holds tokenizer.json).") var model: String
    @Option(help: "Text to encode.") var text: String
    @Flag(name: .customLong("no-special"), help: "Do not add the post-processor's special tokens (BOS).") var noSpecial = false
    func run() throws {
        let tok = try Tokenizer(directory: model)
        try printJSON(["ids": tok.encode(text, addSpecialTokens: !noSpecial)])
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Decode ids; prints {\"text\":\"...\"}.")
    @Option(help: "Model folder (holds tokenizer.json).") var model: String
    @Option(help: "Comma-separated token ids.") var ids: String
    @Flag(name: .customLong("skip-special"), help: "Leave special tokens out of the text.") var skipSpecial = false
    func run() throws {
        let tok = try Tokenizer(directory: model)
        try printJSON(["text": tok.decode(parseIDs(ids), skipSpecialTokens: skipSpecial, strict: true)])
    }
}

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Logits of every position; prints {\"ids\":[...],\"logits\":[[...],...]}.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Comma-separated token ids.") var ids: String
    @Option(help: "Write the JSON to this file instead of stdout.") var out: String?
    @OptionGroup var threads: ThreadOption
    func run() throws {
        try threads.apply()
        let loaded = try LoadedModel(directory: model)
        let ids = try parseIDs(ids)
        let logits = try loaded.model.logits(ids.map(Int32.init))
        let obj: [String: Any] = ["ids": ids, "logits": logits.map { $0.map(Double.init) }]
        if let out {
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            try data.write(to: URL(fileURLWithPath: out))
        } else {
            try printJSON(obj)
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt; streams text, tokens/s to stderr.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Prompt text (encoded with the model's tokenizer, BOS added where it adds it).") var prompt: String?
    @Option(help: "Prompt as comma-separated token ids.") var ids: String?
    @Option(name: .customLong("prompts-file"), help: ArgumentHelp("Run many prompts together (continuous batching): one prompt per line, or JSONL objects with \"prompt\" or \"ids\" and optional \"max_tokens\", \"temperature\", \"top_k\", \"top_p\", \"seed\", \"n\", \"stop\". Prints one JSON line per request.")) var promptsFile: String?
    @Option(name: .customLong("kv-block-size"), help: "Tokens per KV block (batch mode).") var kvBlockSize = 16
    @Option(name: .customLong("kv-blocks"), help: "KV blocks in the pool (batch mode; default: enough for every request, at most --kv-memory).") var kvBlocks: Int?
    @Option(name: .customLong("kv-memory"), help: "KV pool size in bytes, e.g. 512MiB (batch mode; default 2GiB cap).") var kvMemory: String?
    @Option(name: .customLong("max-batch"), help: "Most sequences decoding at once (batch mode).") var maxBatch = 64
    @Option(name: .customLong("ram-budget"), help: "Keep everything resident (weights, KV, staging, activations, runtime) under this many bytes, e.g. 1GiB; layers that do not fit are streamed from disk.") var ramBudget: String?
    @Option(help: "Weight tiers: tiered (resident + streamed, the default under a budget) or mmap (map the file, the llama.cpp way).") var weights: String = "tiered"
    @Option(help: "Run a saved placement (JSON, as written in a report's \"placement\").") var placement: String?
    @Option(help: "Layers read ahead while one computes, when streaming.") var prefetch = 1
    @Option(name: .customLong("kv-disk"), help: "File for the KV cache's disk tier: preempted sequences are swapped there.") var kvDisk: String?
    @Option(name: .customLong("kv-disk-size"), help: "Size limit of the --kv-disk file, e.g. 1GiB.") var kvDiskSize: String = "1GiB"
    @Option(help: "Write a JSON run report (measured speeds, disk traffic, ledger peak, placement) to this file.") var report: String?
    @Option(help: "Run a saved plan (from strata plan --out).") var plan: String?
    @Flag(name: .customLong("no-plan"), help: "Under --ram-budget, place with the simple rule instead of the planner.") var noPlan = false
    @Option(name: .customLong("max-tokens"), help: "Tokens to generate at most.") var maxTokens = 128
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample from the k most likely tokens (0: all).") var topK = 0
    @Option(name: .customLong("top-p"), help: "Sample from the smallest set reaching probability p (1: off).") var topP: Float = 1
    @Option(help: "Seed for reproducible sampling.") var seed: UInt64?
    @Option(name: .customLong("stop"), help: "Stop string (repeatable).") var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.") var ignoreEOS = false
    @Flag(help: "Print one JSON object {\"prompt_ids\",\"ids\",\"text\"} instead of streaming.") var json = false
    @OptionGroup var threads: ThreadOption

    func validate() throws {
        let given = [prompt != nil, ids != nil, promptsFile != nil].filter { $0 }.count
        if given != 1 { throw ValidationError("give exactly one of --prompt, --ids and --prompts-file") }
        if kvBlockSize < 1 { throw ValidationError("--kv-block-size must be positive") }
        if let m = kvMemory, parseByteSize(m) == nil { throw ValidationError("--kv-memory: '\(m)' is not a size (e.g. 512MiB, 2GiB)") }
        if let b = ramBudget, parseByteSize(b) == nil { throw ValidationError("--ram-budget: '\(b)' is not a size (e.g. 1GiB)") }
        if parseByteSize(kvDiskSize) == nil { throw ValidationError("--kv-disk-size: '\(kvDiskSize)' is not a size") }
        if Placement.Weights(rawValue: weights) == nil { throw ValidationError("--weights must be tiered or mmap, got '\(weights)'") }
        if prefetch < 0 { throw ValidationError("--prefetch must be >= 0") }
    }

    var tiered: Bool { ramBudget != nil || placement != nil || plan != nil || report != nil || kvDisk != nil || weights != "tiered" }

    func run() throws {
        try threads.apply()
        if tiered { return try runTiered() }
        let loaded = try LoadedModel(directory: model)
        if let promptsFile { return try runBatch(loaded, file: promptsFile) }
        let promptIDs: [Int]
        if let ids { promptIDs = try parseIDs(ids) } else { promptIDs = try loaded.requireTokenizer().encode(prompt!) }
        let params = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed, maxTokens: maxTokens,
                                        stopStrings: stop, stopAtEOS: !ignoreEOS)
        let out = FileHandle.standardOutput
        let result = try Generator(loaded).generate(promptIDs: promptIDs, parameters: params) { tok in
            if !json && loaded.tokenizer != nil && !tok.text.isEmpty { out.write(Data(tok.text.utf8)) }
            if !json && loaded.tokenizer == nil && tok.id >= 0 { out.write(Data("\(tok.id) ".utf8)) }
            return true
        }
        if json {
            try printJSON(["prompt_ids": result.promptIDs, "ids": result.ids, "text": result.text])
        } else {
            out.write(Data("\n".utf8))
        }
        eprint(String(format: "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.2f tokens/s | stop: %@",
                      result.promptIDs.count, result.promptTokensPerSecond, result.ids.count, result.decodeTokensPerSecond,
                      result.stopReason.rawValue as NSString))
    }
}

extension Generate {
    struct FileRequest: Decodable {
        var prompt: String?
        var ids: [Int]?
        var max_tokens: Int?
        var temperature: Float?
        var top_k: Int?
        var top_p: Float?
        var seed: UInt64?
        var n: Int?
        var stop: [String]?
    }

    /// Generation under a RAM budget (or with a report): tiered weights, paged KV, batch engine.
    func runTiered() throws {
        // the folder opened once (config, headers, tokenizer): everything below takes it
        let folder = try ModelFolder(directory: model)
        let tokPath = (model as NSString).appendingPathComponent("tokenizer.json")
        let tokenizer = folder.tokenizer
        func encode(_ text: String) throws -> [Int] {
            guard let tokenizer else { throw ConfigError.missingFile(path: tokPath) }
            return tokenizer.encode(text)
        }
        let requests: [GenerationRequest]
        if let promptsFile {
            requests = try readRequests(promptsFile, encode: encode)
        } else {
            let ids = try self.ids.map(parseIDs) ?? encode(prompt!)
            requests = [GenerationRequest(prompt: ids, parameters: SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed,
                                                                                    maxTokens: maxTokens, stopStrings: stop, stopAtEOS: !ignoreEOS))]
        }
        let workload = Workload(batch: min(maxBatch, requests.reduce(0) { $0 + $1.n }),
                                promptTokens: requests.map { $0.prompt.count }.max() ?? 1,
                                outputTokens: requests.map { $0.parameters.maxTokens }.max() ?? 1)
        let spec = folder.spec
        var swap: SwapSpace? = nil
        if let kvDisk {
            let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: kvBlockSize)
            swap = try SwapSpace(path: kvDisk, bytes: parseByteSize(kvDiskSize)!, slotBytes: perBlock)
        }
        var saved = try placement.map { try JSONDecoder().decode(Placement.self, from: Data(contentsOf: URL(fileURLWithPath: $0))) }
        var usedPlan: Plan? = try plan.map { try JSONDecoder().decode(Plan.self, from: Data(contentsOf: URL(fileURLWithPath: $0))) }
        if saved == nil, usedPlan == nil, !noPlan, let budget = ramBudget.flatMap(parseByteSize) {
            // plan automatically: the planner's placement and its prediction
            let inv = try PlannerInventory.build(folder: folder, workload: workload)
            usedPlan = try Planner.plan(inv: inv, profile: try loadProfile(),
                                        request: PlanRequest(budgetBytes: budget, batch: workload.batch, promptTokens: workload.promptTokens,
                                                             outputTokens: workload.outputTokens), curve: false)
        }
        if let usedPlan, saved == nil {
            saved = usedPlan.placement
            if let w = Placement.Weights(rawValue: weights) { saved!.weights = w }
        }
        let run = try TieredRun(folder: folder, budget: ramBudget.flatMap(parseByteSize), workload: workload, placement: saved,
                                weights: Placement.Weights(rawValue: weights)!, prefetchDepth: prefetch, blockSize: kvBlockSize,
                                kvBlocks: kvBlocks, swap: swap)
        defer { run.shutdown() }
        let p = run.placement
        eprint("placement: weights \(p.weights.rawValue), \(spec.layers - p.streamedLayers.count) layers resident, \(p.streamedLayers.count) streamed (prefetch \(p.prefetchDepth)), KV \(p.kvBlocksRAM) blocks in RAM, \(p.kvBlocksDisk) on disk")
        let single = promptsFile == nil && !json
        let out = FileHandle.standardOutput
        var (outs, rep) = try run.run(requests) { _, _, tok in
            if single && !tok.text.isEmpty { out.write(Data(tok.text.utf8)) }
        }
        if single { out.write(Data("\n".utf8)) }
        for o in outs where !single {
            if promptsFile == nil {
                try printJSON(["prompt_ids": requests[0].prompt, "ids": o.ids, "text": o.text])
            } else {
                try printOutput(o, requests)
            }
        }
        let m = rep.measured
        eprint(String(format: "prompt %.1f tokens/s | decode %.2f tokens/s per sequence, %.2f aggregate | TTFT %.2f s | disk read %@ at %.0f MB/s, I/O wait %.2f s | ledger peak %@, peak RSS %@",
                      m.prefillTokensPerSecond, m.decodeTokensPerSecond, m.aggregateTokensPerSecond, m.timeToFirstTokenSeconds,
                      formatBytes(m.diskBytesRead) as NSString, m.diskReadBytesPerSecond / 1e6, m.ioWaitSeconds,
                      formatBytes(m.peakResidentBytes) as NSString, formatBytes(m.peakRSSBytes) as NSString))
        if let usedPlan {
            rep.compare(with: usedPlan.prediction.reportValues)
            // the rule's figure is aggregate tokens/s under the throughput objective (per sequence under latency)
            if usedPlan.ruleTokensPerSecond > 0, usedPlan.request.objective == .throughput {
                rep.predictedRuleTokensPerSecond = usedPlan.ruleTokensPerSecond
            }
            if !usedPlan.versusRule.isEmpty { eprint("plan vs \(usedPlan.versusRule)") }
            eprint("measured vs predicted:")
            eprint("  " + "key".padding(toLength: 30, withPad: " ", startingAt: 0) + "measured".padding(toLength: 16, withPad: " ", startingAt: 0) + "predicted".padding(toLength: 16, withPad: " ", startingAt: 0) + "error")
            let measuredValues: [String: Double] = [
                "prefill_tokens_per_second": m.prefillTokensPerSecond, "decode_tokens_per_second": m.decodeTokensPerSecond,
                "aggregate_tokens_per_second": m.aggregateTokensPerSecond, "time_to_first_token_seconds": m.timeToFirstTokenSeconds,
                "disk_bytes_read": Double(m.diskBytesRead), "peak_resident_bytes": Double(m.peakResidentBytes)]
            for k in measuredValues.keys.sorted() {
                let pv = rep.predicted?[k] ?? 0, mv = measuredValues[k]!
                eprint("  " + k.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%-16.4g%-16.4g%+.1f%%", mv, pv, 100 * (rep.error?[k] ?? 0)))
            }
        }
        _ = outs
        if let report {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(rep).write(to: URL(fileURLWithPath: report))
        }
    }

    func readRequests(_ file: String, encode: (String) throws -> [Int]) throws -> [GenerationRequest] {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("--prompts-file: cannot read \(file)")
        }
        var requests: [GenerationRequest] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            var base = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed, maxTokens: maxTokens,
                                          stopStrings: stop, stopAtEOS: !ignoreEOS)
            var promptIDs: [Int]
            var samples = 1
            if line.hasPrefix("{") {
                let r: FileRequest
                do { r = try JSONDecoder().decode(FileRequest.self, from: Data(line.utf8)) } catch {
                    throw ValidationError("\(file):\(n + 1): not a JSON request object (\(error))")
                }
                if let ids = r.ids { promptIDs = ids } else if let p = r.prompt { promptIDs = try encode(p) } else {
                    throw ValidationError("\(file):\(n + 1): needs \"prompt\" or \"ids\"")
                }
                base.maxTokens = r.max_tokens ?? base.maxTokens
                base.temperature = r.temperature ?? base.temperature
                base.topK = r.top_k ?? base.topK
                base.topP = r.top_p ?? base.topP
                base.seed = r.seed ?? base.seed
                base.stopStrings = r.stop ?? base.stopStrings
                samples = r.n ?? 1
            } else {
                promptIDs = try encode(line)
            }
            requests.append(GenerationRequest(prompt: promptIDs, parameters: base, n: samples))
        }
        if requests.isEmpty { throw ValidationError("--prompts-file: \(file) holds no prompts") }
        return requests
    }

    /// One JSON line per request (and sample) of a batch run.
    func printOutput(_ o: RequestOutput, _ requests: [GenerationRequest]) throws {
        var obj: [String: Any] = ["index": o.index, "text": o.text, "ids": o.ids, "prompt_tokens": o.promptTokens,
                                  "generated_tokens": o.ids.count, "stop_reason": o.stopReason.rawValue]
        if requests[o.index].n > 1 { obj["sample"] = o.sample }
        if let e = o.error { obj["error"] = e }
        try printJSON(obj)
    }

    func runBatch(_ loaded: LoadedModel, file: String) throws {
        let requests = try readRequests(file) { try loaded.requireTokenizer().encode($0) }
        let spec = loaded.spec
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: kvBlockSize)
        let cap = kvMemory.flatMap(parseByteSize) ?? (2 << 30)
        let wanted = requests.reduce(0) { $0 + $1.n * (($1.prompt.count + $1.parameters.maxTokens + kvBlockSize) / kvBlockSize) }
        let blocks = kvBlocks ?? (kvMemory != nil ? cap / perBlock : min(wanted, cap / perBlock))
        guard blocks >= 1 else { throw ValidationError("KV pool of \(formatBytes(cap)) holds no block of \(formatBytes(perBlock))") }
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: blocks, blockSize: kvBlockSize, maxBatch: maxBatch))
        let outs = try engine.run(requests)
        for o in outs { try printOutput(o, requests) }
        let st = engine.stats
        let generated = outs.reduce(0) { $0 + $1.ids.count }
        eprint(String(format: "%d requests, %d sequences: %d prompt tokens computed (%d from the prefix cache), %d generated in %.2f s: %.2f tokens/s aggregate; %d steps, max %d running, %d preemptions, KV pool %d blocks x %d tokens (%@)",
                      requests.count, outs.count, st.promptTokensComputed, st.prefixHitTokens, generated, st.seconds,
                      Double(generated) / max(st.seconds, 1e-9), st.steps, st.maxRunning, st.preemptions, blocks, kvBlockSize,
                      formatBytes(blocks * perBlock) as NSString))
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a model folder's inventory (from headers, no weights read).")
    @Option(help: "Model folder.") var model: String
    @Option(help: "For a folder with config.json only: the weight dtype (f32, f16, bf16); default the config's torch_dtype / dtype.") var dtype: String?
    @Flag(help: "JSON output.") var json = false
    func run() throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: model)) ?? []
        if dtype != nil || !files.contains(where: { $0.hasSuffix(".safetensors") }) {
            // config only: the sizes the planner derives from config.json
            let dt = try dtype.map { d -> DType in
                guard let x = DType(rawValue: d) else { throw ValidationError("--dtype must be f32, f16 or bf16") }
                return x
            }
            let folder = try ModelFolder(directory: model)
            let inv = try PlannerInventory.build(folder: folder, workload: Workload(batch: 1, promptTokens: 1, outputTokens: 1), dtype: dt)
            let spec = folder.spec
            let d = inv.weightDType ?? .f32
            // the planner's inventory leaves out an untied token embedding (cold: read a row a token)
            let embedding = spec.tiedEmbeddings ? 0 : spec.vocabSize * spec.hiddenSize
            let params = inv.weightBytes / d.byteSize + embedding
            let bytes = params * d.byteSize
            if json {
                try printJSON(["model": model, "architecture": spec.architecture, "source": "config.json", "dtype": d.rawValue,
                               "layers": inv.layers, "parameters": params, "weight_bytes": bytes,
                               "kv_bytes_per_token": inv.kvBytesPerToken])
            } else {
                print("\(model): \(spec.architecture), config.json only (no weights): \(d.rawValue), \(inv.layers) layers, "
                      + "\(String(format: "%.1f", Double(params) / 1e6)) M parameters, \(formatBytes(bytes)) of weights, "
                      + "KV \(formatBytes(inv.kvBytesPerToken)) per token")
            }
            return
        }
        let s = try CheckpointSummary(directory: model)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(s), as: UTF8.self))
        } else {
            print(s.text, terminator: "")
        }
    }
}

struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "synth", abstract: "Write a random-weight model folder of a real shape.")
    @Option(help: "Preset: \(Synth.presets.map { $0.name }.joined(separator: ", ")).") var preset: String
    @Option(help: "Weight dtype: f32, f16 or bf16.") var dtype: String = "f32"
    @Option(help: "Seed of the weights.") var seed: UInt64 = 0
    @Option(help: "Output folder.") var out: String
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        guard let dt = DType(rawValue: dtype) else { throw ValidationError("--dtype must be f32, f16 or bf16, got '\(dtype)'") }
        let p = try Synth.preset(preset)
        let t0 = now()
        var lastPrint = 0.0
        let tty = isatty(2) != 0
        try Synth.write(preset: p, dtype: dt, seed: seed, to: out) { done, total in
            let t = now()
            if t - lastPrint < 0.2 && done < total { return }
            lastPrint = t
            let frac = Double(done) / Double(max(1, total))
            let bar = String(repeating: "#", count: Int(frac * 30)).padding(toLength: 30, withPad: ".", startingAt: 0)
            let line = String(format: "[%@] %5.1f%%  ", bar as NSString, frac * 100) + formatBytes(done) + " / " + formatBytes(total)
                + String(format: "  %.0f MB/s", Double(done) / max(1e-9, t - t0) / 1e6)
            FileHandle.standardError.write(Data(((tty ? "\r" : "") + line + (tty ? "" : "\n")).utf8))
        }
        if tty { eprint("") }
        eprint("wrote \(out): \(p.name) (\(p.architecture.name), \(String(format: "%.1f", Double(p.parameterCount) / 1e6)) M parameters, \(dt.rawValue)) in \(String(format: "%.1f", now() - t0)) s")
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the machine and BLAS Strata sees, as JSON.")
    @OptionGroup var threads: ThreadOption
    @Flag(help: "Also measure memory read bandwidth and sgemm FLOP/s (a few seconds).") var measure = false
    func run() throws {
        try threads.apply()
        if measure {
            let bw = Measure.memoryReadBandwidth()
            let g = Measure.gemmFlops(m: 512, n: 5632, k: 2048)
            let gv = Measure.gemmFlops(m: 1, n: 5632, k: 2048, repeats: 20)
            eprint(String(format: "memory read bandwidth: %.1f GB/s; sgemm [512,2048]x[5632,2048]^T: %.1f GFLOP/s; gemv: %.1f GFLOP/s", bw / 1e9, g / 1e9, gv / 1e9))
            for m in [2, 4, 8, 16, 32, 64, 128] {
                let f = Measure.gemmFlops(m: m, n: 5632, k: 2048, repeats: 10)
                eprint(String(format: "  linear M=%d: %.1f GFLOP/s = weights read at %.1f GB/s", m, f / 1e9, f / Double(2 * m) * 4 / 1e9))
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(MachineInfo.current()), as: UTF8.self))
    }
}

struct MatmulDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul-demo",
        abstract: "Multiply square matrices through Strata's BLAS wrapper and print GFLOP/s.")
    @OptionGroup var threads: ThreadOption
    @Option(help: "Matrix sizes.") var sizes: [Int] = [256, 512, 1024, 2048]
    @Option(help: "Repeats per size (the median is printed).") var repeats: Int = 5

    func run() throws {
        try threads.apply()
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
        let m = MachineInfo.current()
        print("cpu: \(m.cpu), cores: \(m.cores), threads: \(m.threads)")
        print("OpenBLAS core: \(m.openBLASCore)  (\(m.openBLASConfig))")
        print("size    median ms    GFLOP/s")
        for n in sizes {
            guard n >= 1 else { throw ValidationError("matrix size must be positive, got \(n)") }
            let a = Tensor(zeros: [n, n]), b = Tensor(zeros: [n, n]), c = Tensor(zeros: [n, n])
            for i in 0..<(n * n) { a.f32[i] = Float(i % 7) * 0.1; b.f32[i] = Float(i % 5) * 0.1 }
            a.matmul(b, into: c)
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = now()
                a.matmul(b, into: c)
                times.append(now() - t0)
            }
            let med = median(times)
            print(String(format: "%-6d %10.2f %10.1f", n, med * 1000, 2 * Double(n) * Double(n) * Double(n) / med / 1e9))
        }
    }
}

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-model",
        abstract: "llama-bench-like prompt processing (pp) and decode (tg) speed, beside the machine's bounds measured in the same run.")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Prompt tokens for the pp test.") var prompt = 512
    @Option(help: "Generated tokens for the tg test.") var gen = 128
    @Option(help: "Repeats (medians are reported).") var repeats = 3
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        guard prompt >= 1, gen >= 1, repeats >= 1 else { throw ValidationError("--prompt, --gen and --repeats must be positive") }
        let loaded = try LoadedModel(directory: model)
        let m = loaded.model
        let spec = m.spec
        let summary = try CheckpointSummary(folder: loaded.folder)
        let vocab = spec.vocabSize
        let ids = (0..<prompt).map { Int32(($0 * 7919 + 13) % vocab) }
        let cap = min(spec.maxPositions, max(prompt, gen + 1))
        // warm up: touch every weight page once (first-touch page faults are not compute)
        do {
            let c = m.makeCache(capacity: cap)
            _ = try ids.prefix(8).withUnsafeBufferPointer { try m.forward($0, cache: c, allLogits: false) }
        }
        let params = Double(summary.parameters)
        // bytes a decode step reads: every weight except the embedding table (one row is gathered)
        let embedBytes = summary.roles.first { $0.role == "embedding" }?.bytes ?? 0
        let tied = spec.tiedEmbeddings && !summary.roles.contains { $0.role == "lm_head" }
        let decodeBytes = Double(summary.totalBytes - (tied ? 0 : embedBytes))
        // Each repeat measures its own bounds right before its test (this machine's bandwidth
        // drifts with its neighbours), so each ratio is from one moment; medians are reported.
        var pp: [Double] = [], tg: [Double] = [], ppB: [Double] = [], tgB: [Double] = [], flopsS: [Double] = [], bwS: [Double] = []
        for r in 0..<repeats {
            eprint("repeat \(r + 1)/\(repeats): sgemm bound, pp\(prompt)")
            let flops = Measure.gemmFlops(m: min(prompt, 512), n: spec.intermediateSize, k: spec.hiddenSize, repeats: 3)
            flopsS.append(flops); ppB.append(flops / (2 * params))
            let c1 = m.makeCache(capacity: cap)
            var t0 = now()
            _ = try ids.withUnsafeBufferPointer { try m.forward($0, cache: c1, allLogits: false) }
            pp.append(Double(prompt) / (now() - t0))
            eprint("repeat \(r + 1)/\(repeats): memory bandwidth bound, tg\(gen)")
            let bw = Measure.memoryReadBandwidth(bytes: 512 << 20, repeats: 3)
            bwS.append(bw); tgB.append(bw / decodeBytes)
            let c2 = m.makeCache(capacity: cap)
            var one: [Int32] = [1]
            t0 = now()
            for i in 0..<gen {
                one[0] = Int32((i * 31 + 7) % vocab)
                _ = try one.withUnsafeBufferPointer { try m.forward($0, cache: c2, allLogits: false) }
            }
            tg.append(Double(gen) / (now() - t0))
        }
        let flops = median(flopsS), bw = median(bwS)
        let ppBound = median(ppB), tgBound = median(tgB)
        let ppMed = median(pp), tgMed = median(tg)
        let ppFrac = median(zip(pp, ppB).map { $0 / $1 }), tgFrac = median(zip(tg, tgB).map { $0 / $1 })
        func spread(_ xs: [Double]) -> Double { (xs.max()! - xs.min()!) / 2 }
        if json {
            try printJSON(["model": model, "threads": Threads.count, "pp_tokens": prompt, "tg_tokens": gen, "repeats": repeats,
                           "pp_tokens_per_second": ppMed, "pp_spread": spread(pp), "tg_tokens_per_second": tgMed, "tg_spread": spread(tg),
                           "sgemm_flops": flops, "memory_read_bytes_per_second": bw, "pp_bound": ppBound, "tg_bound": tgBound,
                           "decode_bytes_per_token": decodeBytes, "parameters": params, "pp_fraction_of_bound": ppFrac, "tg_fraction_of_bound": tgFrac])
            return
        }
        print("model: \(spec.architecture) \(String(format: "%.0f", params / 1e6))M params, weights \(formatBytes(summary.totalBytes)), threads \(Threads.count)")
        print(String(format: "bounds (same run): sgemm %.1f GFLOP/s -> pp bound %.1f t/s; memory read %.1f GB/s over %@ per token -> tg bound %.2f t/s",
                     flops / 1e9, ppBound, bw / 1e9, formatBytes(Int(decodeBytes)) as NSString, tgBound))
        print("| test | tokens/s (median of \(repeats)) | ± | bound | fraction of bound (median of per-repeat ratios) |")
        print("|---|---:|---:|---:|---:|")
        print(String(format: "| pp%d | %.2f | %.2f | %.2f | %.1f%% |", prompt, ppMed, spread(pp), ppBound, 100 * ppFrac))
        print(String(format: "| tg%d | %.2f | %.2f | %.2f | %.1f%% |", gen, tgMed, spread(tg), tgBound, 100 * tgFrac))
    }
}

struct BenchBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-batch",
        abstract: "Aggregate decode tokens/s at several batch sizes (continuous batching, paged KV).")
    @Option(help: "Model folder.") var model: String
    @Option(help: "Batch sizes.") var batches: [Int] = [1, 4, 16, 64]
    @Option(help: "Prompt tokens per request.") var prompt = 32
    @Option(help: "Generated tokens per request.") var gen = 32
    @Option(help: "Repeats per batch size (medians).") var repeats = 3
    @Flag(help: "One JSON line per batch size instead of a table.") var json = false
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        let loaded = try LoadedModel(directory: model)
        let spec = loaded.spec
        let summary = try CheckpointSummary(folder: loaded.folder)
        var rows: [(Int, Double, Double, Double)] = []
        for b in batches {
            guard b >= 1 else { throw ValidationError("batch sizes must be positive") }
            var rates: [Double] = []
            for r in 0..<repeats {
                eprint("batch \(b): repeat \(r + 1)/\(repeats)")
                let requests = (0..<b).map { i in
                    GenerationRequest(prompt: (0..<prompt).map { ($0 * 7919 + i * 104729 + r) % spec.vocabSize },
                                      parameters: SamplingParameters(temperature: 0, maxTokens: gen, stopAtEOS: false))
                }
                let blocks = b * ((prompt + gen + 16) / 16 + 1)
                let engine = BatchEngine(loaded: loaded, config: .init(blocks: blocks, blockSize: 16, maxBatch: max(b, 1)))
                _ = try engine.run(requests)
                rates.append(engine.stats.decodeTokensPerSecond)
            }
            let med = median(rates)
            rows.append((b, med, (rates.max()! - rates.min()!) / 2, med / max(rows.first?.1 ?? med, 1e-9)))
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

struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure GEMM rates, memory and disk bandwidth for the planner (cached).")
    @Option(name: .customLong("disk-path"), help: "Directory on the disk that will hold models and KV swap.") var diskPath: String = "."
    @Option(name: .customLong("disk-file"), help: "Measure the disk read speed on this existing file (e.g. a model's safetensors, the file that will stream) instead of a fresh scratch file; updates the cached profile's disk read figure.") var diskFile: String?
    @Option(help: "Also write the profile JSON here.") var out: String?
    @Flag(help: "Measure again even when a cached profile exists.") var refresh = false
    @OptionGroup var threads: ThreadOption
    func run() throws {
        try threads.apply()
        var p: HardwareProfile
        if let diskFile {
            p = try Profiler.cached() ?? Profiler.measure(diskPath: diskPath) { eprint($0) }
            p.diskReadBytesPerSecond = try Profiler.fileReadBandwidth(path: diskFile)
            p.diskPath = diskFile
            eprint(String(format: "disk read on %@: %.0f MB/s", diskFile as NSString, p.diskReadBytesPerSecond / 1e6))
            try Profiler.save(p)
        } else if !refresh, let c = Profiler.cached() {
            eprint("using the cached profile \(Profiler.cachePath) (--refresh measures again)")
            p = c
        } else {
            p = try Profiler.measure(diskPath: diskPath) { eprint($0) }
            try Profiler.save(p)
            eprint("saved \(Profiler.cachePath)")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(p)
        if let out { try data.write(to: URL(fileURLWithPath: out)) }
        print(String(decoding: data, as: UTF8.self))
    }
}

/// The cached profile, measured now when there is none.
func loadProfile() throws -> HardwareProfile {
    if let p = Profiler.cached() { return p }
    eprint("no hardware profile yet: measuring (strata profile)")
    let p = try Profiler.measure(diskPath: ".") { eprint($0) }
    try Profiler.save(p)
    return p
}

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Plan weights and KV across RAM and disk under a RAM budget, and predict the speed.")
    @Option(help: "Model folder (config.json; safetensors headers unless --dtype).") var model: String
    @Option(name: .customLong("ram-budget"), help: "RAM budget, e.g. 2GiB.") var ramBudget: String
    @Option(help: "Batch size, or auto.") var batch: String = "auto"
    @Option(name: .customLong("prompt-tokens")) var promptTokens = 512
    @Option(name: .customLong("output-tokens")) var outputTokens = 128
    @Option(help: "throughput or latency.") var objective: String = "throughput"
    @Option(help: "text, json or markdown.") var format: String = "text"
    @Option(help: "Write the placement strip and budget curve as SVG.") var svg: String?
    @Option(help: "Plan from config.json alone with this weight dtype (f32, f16, bf16): no weights needed.") var dtype: String?
    @Option(help: "Write the plan JSON (for generate --plan).") var out: String?
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        guard let budget = parseByteSize(ramBudget) else { throw ValidationError("--ram-budget: '\(ramBudget)' is not a size") }
        guard let obj = PlanRequest.Objective(rawValue: objective) else { throw ValidationError("--objective must be throughput or latency") }
        let b: Int? = batch == "auto" ? nil : Int(batch)
        if batch != "auto" && (b == nil || b! < 1) { throw ValidationError("--batch must be auto or a positive integer") }
        let dt = try dtype.map { d -> DType in
            guard let x = DType(rawValue: d) else { throw ValidationError("--dtype must be f32, f16 or bf16") }
            return x
        }
        guard ["text", "json", "markdown"].contains(format) else { throw ValidationError("--format must be text, json or markdown") }
        let profile = try loadProfile()
        let workload = Workload(batch: b ?? 1, promptTokens: promptTokens, outputTokens: outputTokens)
        let inv = try PlannerInventory.build(directory: model, workload: workload, dtype: dt)
        let plan = try Planner.plan(inv: inv, profile: profile, request: PlanRequest(budgetBytes: budget, batch: b, promptTokens: promptTokens,
                                                                                    outputTokens: outputTokens, objective: obj))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let out { try enc.encode(plan).write(to: URL(fileURLWithPath: out)) }
        if let svg { try PlanReport.svg(plan, inv: inv).write(toFile: svg, atomically: true, encoding: .utf8) }
        switch format {
        case "json": print(String(decoding: try enc.encode(plan), as: UTF8.self))
        default: print(PlanReport.text(plan, inv: inv, profile: profile, markdown: format == "markdown"), terminator: "")
        }
    }
}
