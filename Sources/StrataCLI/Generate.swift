import ArgumentParser
import Foundation
import Strata
import StrataMPI
import StrataMemory
import StrataPlanner

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt; streams text, tokens/s to stderr.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json, safetensors) or GGUF file.") var model: String
    @Option(name: [.customLong("prompt"), .customShort("p")], help: "Prompt text (encoded with the model's tokenizer, BOS added where it adds it).") var prompt: String?
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
    @OptionGroup var distributed: DistributedOption
    @Option(name: .customLong("kv-disk"), help: "File for the KV cache's disk tier: preempted sequences are swapped there.") var kvDisk: String?
    @Option(name: .customLong("kv-disk-size"), help: "Size limit of the --kv-disk file, e.g. 1GiB.") var kvDiskSize: String = "1GiB"
    @Option(help: "Write a JSON run report (measured speeds, disk traffic, ledger peak, placement) to this file.") var report: String?
    @Option(help: "Run a saved plan (from strata plan --out).") var plan: String?
    @Flag(name: .customLong("no-plan"), help: "Under --ram-budget, place with the simple rule instead of the planner.") var noPlan = false
    @Option(name: [.customLong("max-tokens"), .customShort("n")], help: "Tokens to generate at most (default: generation_config.json's max_new_tokens, else 128).") var maxTokens: Int?
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .customLong("stop"), help: "Stop string (repeatable).") var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens.") var ignoreEOS = false
    @Flag(help: "Print one JSON object {\"prompt_ids\",\"ids\",\"text\"} instead of streaming.") var json = false
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func validate() throws {
        let given = [prompt != nil, ids != nil, promptsFile != nil].filter { $0 }.count
        if given != 1 { throw ValidationError("give exactly one of --prompt, --ids and --prompts-file") }
        try checkFlag(kvBlockSize, 1...1024, "--kv-block-size")
        if let maxTokens { try checkFlag(maxTokens, 0...SamplingParameters.maxTokensLimit, "--max-tokens") }
        try checkFlag(maxBatch, 1...4096, "--max-batch")
        if let kvBlocks { try checkFlag(kvBlocks, 1...(1 << 24), "--kv-blocks") }
        if let m = kvMemory, parseByteSize(m) == nil { throw ValidationError("--kv-memory: '\(m)' is not a size (e.g. 512MiB, 2GiB)") }
        if let b = ramBudget, parseByteSize(b) == nil { throw ValidationError("--ram-budget: '\(b)' is not a size (e.g. 1GiB)") }
        if parseByteSize(kvDiskSize) == nil { throw ValidationError("--kv-disk-size: '\(kvDiskSize)' is not a size") }
        _ = try parseWeights(weights)
        try checkFlag(prefetch, 0...64, "--prefetch")
    }

    /// generation_config.json's defaults, then the flags given.
    func sampling(_ folder: ModelFolder) -> SamplingParameters {
        var p = sampling.parameters(folder, maxTokens: maxTokens, fallback: 128)
        p.stopStrings = stop
        p.stopAtEOS = !ignoreEOS
        return p
    }

    var tiered: Bool { ramBudget != nil || placement != nil || plan != nil || report != nil || kvDisk != nil || weights != "tiered" }

    func run() throws {
        if let report { try FileIO.requireReplaceable(report) }  // before any work
        try threads.apply()
        Interrupt.install()
        if MPIWorld.launched {
            // pipeline stages over the job's ranks: always the batch engine over paged KV (docs/distributed.md)
            try Distributed.run(model: model, budget: ramBudget.flatMap(parseByteSize), options: distributed) { try runTiered() }
        } else if tiered { try runTiered() } else { try runResident() }
        if Interrupt.requested { throw ExitCode(130) }
    }

    func runResident() throws {
        let loaded = try LoadedModel(directory: model)
        if let promptsFile { return try runBatch(loaded, file: promptsFile) }
        let promptIDs: [Int]
        if let ids { promptIDs = try parseIDs(ids) } else { promptIDs = try loaded.requireTokenizer().encode(prompt!) }
        let params = sampling(loaded.folder)
        let out = FileHandle.standardOutput
        var generator = Generator(loaded, kvType: try kv.type(loaded.spec))
        generator.shouldStop = { Interrupt.requested }
        let result = try generator.generate(promptIDs: promptIDs, parameters: params) { tok in
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
    /// Generation under a RAM budget (or with a report): tiered weights, paged KV, batch engine.
    func runTiered() throws {
        // the folder opened once (config, headers, tokenizer): everything below takes it
        let folder = try ModelFolder(path: model)
        let tokPath = (model as NSString).appendingPathComponent("tokenizer.json")
        let tokenizer = folder.tokenizer
        func encode(_ text: String) throws -> [Int] {
            guard let tokenizer else { throw ConfigError.missingFile(path: tokPath) }
            return try tokenizer.encode(text)
        }
        let requests: [GenerationRequest]
        if let promptsFile {
            requests = try readRequests(promptsFile, base: sampling(folder), encode: encode)
        } else {
            let ids = try self.ids.map(parseIDs) ?? encode(prompt!)
            requests = [GenerationRequest(prompt: ids, parameters: sampling(folder))]
        }
        let workload = Session.workload(requests, maxBatch: maxBatch)  // the one Session.run plans and runs with
        let spec = folder.spec
        var kvType = try kv.type(spec)
        var saved = try placement.map { try JSONDecoder().decode(Placement.self, from: Data(contentsOf: URL(fileURLWithPath: $0))) }
        var usedPlan: Plan? = try plan.map { path in
            do { return try JSONDecoder().decode(Plan.self, from: Data(contentsOf: URL(fileURLWithPath: path))) } catch let DecodingError.dataCorrupted(c) {
                throw ValidationError("--plan \(path): \(c.debugDescription)")
            } catch let e as DecodingError {
                throw ValidationError("--plan \(path): not a plan this Strata reads (\(e))")
            }
        }
        // the library's plan -> run: Session
        let session = Session(folder: folder, ramBudget: ramBudget.flatMap(parseByteSize))
        if saved == nil, usedPlan == nil, !noPlan, session.ramBudget != nil, Pipelines.current == nil {
            // plan automatically: the planner's placement and its prediction
            usedPlan = try session.plan(workload, profile: loadProfile(), batch: workload.batch, kvType: kvType)
        }
        if let usedPlan, saved == nil {
            saved = usedPlan.placement
            if let w = Placement.Weights(rawValue: weights) { saved!.weights = w }
        }
        // a saved plan or placement sets the KV type and block size its blocks were counted in
        if let saved {
            if kv.kvType != nil && saved.kvType != kvType {
                throw ValidationError("--kv-type \(kvType.rawValue) differs from the saved plan's or placement's kv_type \(saved.kvType.rawValue)")
            }
            kvType = saved.kvType
        }
        var swap: SwapSpace? = nil
        if let kvDisk {
            let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: saved?.kvBlockSize ?? kvBlockSize, type: kvType)
            swap = try SwapSpace(path: kvDisk, bytes: parseByteSize(kvDiskSize)!, slotBytes: perBlock)
            Interrupt.onForcedExit { FileIO.remove(kvDisk) }
        }
        let single = promptsFile == nil && !json
        let out = FileHandle.standardOutput
        var options = Session.RunOptions(weights: try parseWeights(weights), prefetchDepth: prefetch, blockSize: kvBlockSize,
                                         kvBlocks: kvBlocks, maxBatch: maxBatch, fillTheBudgetRule: noPlan, kvType: kvType)
        options.shouldStop = { Interrupt.requested }
        let result = try session.run(requests, plan: usedPlan, placement: saved, options: options, kvDisk: swap) { _, _, tok in
            if single && !tok.text.isEmpty { out.write(Data(tok.text.utf8)) }
        }
        swap?.close()
        let outs = result.outputs
        var rep = result.report
        if Interrupt.requested { rep.interrupted = true }
        if single { out.write(Data("\n".utf8)) }
        let p = rep.placement
        var held = spec.layers
        if let pipeline = Pipelines.current as? MPIPipeline, !pipeline.stages.isEmpty {
            held = pipeline.stages[0].count
            eprint("pipeline: \(pipeline.splitDescription); rank 0's figures below")
        }
        eprint("placement: weights \(p.weights.rawValue), \(held - p.streamedLayers.count) layers resident, \(p.streamedLayers.count) streamed (prefetch \(p.prefetchDepth)), KV (\(p.kvType.rawValue)) \(p.kvBlocksRAM) blocks in RAM, \(p.kvBlocksDisk) on disk" + (p.expertSlots > 0 ? ", \(p.expertSlots) expert slots" : ""))
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
        if let x = m.expertCache {
            eprint(String(format: "expert cache: %d slots (%@), hit rate %.1f%% (%d hits, %d misses), %@ read, routing entropy %.3f of uniform; hit rate per layer: %@",
                          p.expertSlots, x.policy as NSString, 100 * x.hitRate, x.hits, x.misses, formatBytes(x.bytesRead) as NSString, x.routingEntropy,
                          x.layerHitRates.map { String(format: "%.0f%%", 100 * $0) }.joined(separator: " ") as NSString))
        }
        if let pipeline = Pipelines.current as? MPIPipeline, !pipeline.links.isEmpty { reportPipeline(pipeline, &rep, kvType: kvType) }
        if let usedPlan {
            // Session.run compared the report with the plan's prediction (and the rule's figure)
            if !usedPlan.versusRule.isEmpty { eprint("plan vs \(usedPlan.versusRule)") }
            eprint("measured vs predicted:")
            eprint("  " + "key".padding(toLength: 30, withPad: " ", startingAt: 0) + "measured".padding(toLength: 16, withPad: " ", startingAt: 0) + "predicted".padding(toLength: 16, withPad: " ", startingAt: 0) + "error")
            let measuredValues = rep.measuredValues
            for k in measuredValues.keys.sorted() {
                guard let pv = rep.predicted?[k], let mv = measuredValues[k] else { continue }
                eprint("  " + k.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%-16.4g%-16.4g%+.1f%%", mv, pv, 100 * (rep.error?[k] ?? 0)))
            }
        }
        _ = outs
        if let report {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileIO.writeAtomically(report, enc.encode(rep))
        }
    }

    func readRequests(_ file: String, base defaults: SamplingParameters, encode: (String) throws -> [Int]) throws -> [GenerationRequest] {
        do { return try PromptsFile.read(file, defaults: defaults, encode: encode) } catch let e as PromptsFileError {
            throw ValidationError(e.description)
        }
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
        let requests = try readRequests(file, base: sampling(loaded.folder)) { try loaded.requireTokenizer().encode($0) }
        let spec = loaded.spec
        let kvType = try kv.type(spec)
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: kvBlockSize, type: kvType)
        let engine: BatchEngine
        do {
            engine = try Session.batchEngine(loaded, for: requests, kvBlocks: kvBlocks, kvMemory: kvMemory.flatMap(parseByteSize),
                                             blockSize: kvBlockSize, maxBatch: maxBatch, kvType: kvType)
        } catch let e as SessionError { throw ValidationError(e.description) }
        let blocks = engine.config.blocks
        engine.shouldStop = { Interrupt.requested }
        let outs = try engine.run(requests)
        for o in outs { try printOutput(o, requests) }
        let st = engine.stats
        let generated = outs.reduce(0) { $0 + $1.ids.count }
        eprint(String(format: "%d requests, %d sequences: %d prompt tokens computed (%d from the prefix cache), %d generated in %.2f s: %.2f tokens/s aggregate; %d steps, max %d running, %d preemptions, KV pool %d blocks x %d tokens (%@, %@)",
                      requests.count, outs.count, st.promptTokensComputed, st.prefixHitTokens, generated, st.seconds,
                      Double(generated) / max(st.seconds, 1e-9), st.steps, st.maxRunning, st.preemptions, blocks, kvBlockSize,
                      formatBytes(blocks * perBlock) as NSString, kvType.rawValue as NSString))
    }

    /// Under mpirun: the links measured at start, and the cluster planner's prediction for this
    /// split (each rank's budget, the links, rank 0's profile for every rank) beside the measured speed.
    func reportPipeline(_ pipeline: MPIPipeline, _ rep: inout RunReport, kvType: DType) {
        let n = pipeline.size
        eprint("links (measured at start): " + pipeline.links.enumerated().map { i, l in
            String(format: "rank %d->%d %.0f MB/s, %.0f us", i, (i + 1) % n, l.bytesPerSecond / 1e6, l.latencySeconds * 1e6)
        }.joined(separator: "; "))
        rep.pipeline = PipelineReport(ranks: n, layers: pipeline.stages.map { [$0.lowerBound, $0.upperBound] },
                                      experts: pipeline.expertRanges.isEmpty ? nil : pipeline.expertRanges.map { [$0.lowerBound, $0.upperBound] },
                                      linkBytesPerSecond: pipeline.links.map(\.bytesPerSecond), linkLatencySeconds: pipeline.links.map(\.latencySeconds), plan: nil)
        do {
            let w = rep.workload
            let inv = try PlannerInventory.build(directory: model, workload: w, kvType: kvType)
            // each rank's own cached profile (rank 0's for a rank that has none)
            let hosts = (0..<n).map { i in
                HostSpec(name: "rank \(i)", ramBudgetBytes: Int(pipeline.budgets[i]), profile: i < pipeline.profiles.count ? pipeline.profiles[i] : nil,
                         networkBytesPerSecond: pipeline.links[i].bytesPerSecond, networkLatencySeconds: pipeline.links[i].latencySeconds)
            }
            let request = PlanRequest(budgetBytes: hosts[0].ramBudgetBytes, batch: w.batch, promptTokens: w.promptTokens, outputTokens: w.outputTokens,
                                      bf16Products: Kernels.prefillUsesBF16Products(dtype: inv.weightDType ?? .f32),
                                      exactActivations: Kernels.activations == .f32, kvType: kvType)
            let plan = try ClusterPlanner.plan(inv: inv, hosts: hosts, request: request, profile: loadProfile(), shardExperts: pipeline.shardExperts)
            rep.pipeline?.plan = plan
            rep.compare(with: ["decode_tokens_per_second": plan.decodeTokensPerSecond])
            let measured = rep.measured.decodeTokensPerSecond
            eprint(String(format: "pipeline: predicted decode %.2f tokens/s per sequence (step %.2f ms, %.3f ms of it on the links), measured %.2f (%+.1f%%)",
                          plan.decodeTokensPerSecond, 1000 * plan.decodeStepSeconds, 1000 * plan.networkSecondsPerStep, measured,
                          plan.decodeTokensPerSecond > 0 ? 100 * (measured / plan.decodeTokensPerSecond - 1) : 0))
        } catch {
            eprint("pipeline: no prediction (\(error))")
        }
    }
}
