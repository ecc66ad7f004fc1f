import Foundation
@_exported import StrataPlanner
import StrataMemory

/// The headline feature from `import Strata` alone: open a model, plan it under a RAM budget
/// (the `Plan` and its prediction), run requests under that plan (tokens as they come, or as an
/// `AsyncSequence` of events ending with the run's report), and get the `RunReport` with
/// predicted vs measured. This is what `strata generate --ram-budget` does.
///
/// ```swift
/// let session = try Session(model: "models/tinyllama", ramBudget: 700 << 20)
/// let plan = try session.plan(Workload(batch: 1, promptTokens: 32, outputTokens: 64))
/// let result = try session.run([GenerationRequest(prompt: ids, parameters: .greedy)], plan: plan)
/// print(result.report.error ?? [:])   // measured vs predicted, per figure
/// ```
public final class Session: @unchecked Sendable {
    /// The model folder, opened once.
    public let folder: ModelFolder
    /// The RAM budget in bytes (nil: no budget, everything resident).
    public let ramBudget: Int?

    public init(folder: ModelFolder, ramBudget: Int? = nil) {
        self.folder = folder
        self.ramBudget = ramBudget
    }

    public convenience init(model directory: String, ramBudget: Int? = nil) throws {
        self.init(folder: try ModelFolder(path: directory), ramBudget: ramBudget)
    }

    /// The machine's profile: the cached one (`strata profile`), or measured now (tens of
    /// seconds; `diskPath` is where a scratch file is written) and cached. Logs why a cached
    /// profile may not describe this machine today (`HardwareProfile.warnings`).
    public static func hardwareProfile(diskPath: String = ".", log: (String) -> Void = { _ in }) throws -> HardwareProfile {
        // the runtime overhead read here, cached profile or not: a plan's figure is then the same
        // whether this process measured the machine first or not
        _ = PlacementRule.runtimeOverhead()
        if let p = Profiler.cached() {
            let w = p.warnings(machine: MachineInfo.current().profileMachine, now: Date())
            for line in w { log("warning: " + line) }
            if !w.isEmpty { log("warning: predictions from \(Profiler.cachePath) may be off; `strata profile --refresh` measures again") }
            return p
        }
        log("no hardware profile yet: measuring (strata profile)")
        let p = try Profiler.measure(diskPath: diskPath, log: log)
        try Profiler.save(p)
        return p
    }

    /// The planner's plan for `workload` under the budget (`profile` default: `hardwareProfile()`).
    /// Throws when there is no budget, or when the budget cannot hold the smallest plan.
    public func plan(_ workload: Workload, profile: HardwareProfile? = nil, objective: PlanRequest.Objective = .throughput,
                     batch: Int? = nil, kvType: DType = .kvDefault) throws -> Plan {
        guard let budget = ramBudget else { throw SessionError.noBudget }
        let inv = try PlannerInventory.build(folder: folder, workload: workload, kvType: kvType)
        let prof = try profile ?? Session.hardwareProfile()
        return try Planner.plan(inv: inv, profile: prof, request: PlanRequest(budgetBytes: budget, batch: batch, promptTokens: workload.promptTokens,
                                                                            outputTokens: workload.outputTokens, objective: objective,
                                                                            bf16Products: Kernels.prefillUsesBF16Products(dtype: inv.weightDType ?? .f32),
                                                                            exactActivations: Kernels.activations == .f32, kvType: kvType),
                                curve: false)
    }

    /// The run a server (or any long-lived engine) serves from: planned under the budget for
    /// `maxRunning` sequences of `maxContext` tokens (a quarter of them output) unless `plan` is
    /// false (the fill-the-budget rule); without a budget every weight resident and a KV pool of
    /// `maxRunning` full contexts, at most `kvMemory` bytes, else at most half the RAM the machine
    /// has available beside the weights. `log` says what was chosen. The one assembly of model,
    /// plan and engine for `serve` and the library (`run` does the same for a batch of requests).
    public func servingRun(maxRunning: Int, maxContext: Int? = nil, kvMemory: Int? = nil, kvType: DType = .kvDefault, plan: Bool = true,
                           log: (String) -> Void = { _ in }) throws -> TieredRun {
        let spec = folder.spec
        let context = min(maxContext ?? spec.maxPositions, spec.maxPositions)
        let workload = Workload(batch: maxRunning, promptTokens: max(1, context - context / 4), outputTokens: max(1, context / 4))
        var placement: Placement? = nil
        var kvBlocks: Int? = nil
        if ramBudget != nil, plan, Pipelines.current == nil {
            let p = try self.plan(workload, batch: maxRunning, kvType: kvType)
            placement = p.placement
            log("plan: \(p.placement.streamedLayers.count) layers streamed, batch \(p.placement.batchSize), \(p.placement.kvBlocksRAM) KV blocks (\(kvType.rawValue)), predicted \(String(format: "%.2f", p.prediction.decodeTokensPerSecond)) tokens/s per sequence")
        } else if ramBudget == nil {
            try kvType.checkKV(headDim: spec.headDim)
            let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: 16, type: kvType)
            let weights = try WeightInventory(folder: folder).totalBytes
            let limit = kvMemory ?? max(perBlock, (MemoryInfo.availableBytes() - weights) / 2)
            let blocks = max(1, min(PlacementRule.kvBlocks(workload, blockSize: 16), limit / perBlock))
            kvBlocks = blocks
            let why = kvMemory == nil ? ", at most half the RAM available beside the weights (--kv-memory sets it)" : ""
            log("KV cache: \(blocks) blocks of 16 tokens (\(kvType.rawValue), \(formatBytes(blocks * perBlock)))\(why)")
        }
        return try TieredRun(folder: folder, budget: ramBudget, workload: workload, placement: placement, kvBlocks: kvBlocks, kvType: kvType)
    }

    /// A batch engine over `loaded` (weights as loaded, no budget) for `requests`: a KV pool of
    /// `kvBlocks` blocks, else of `kvMemory` bytes, else enough for every request's prompt and
    /// tokens, at most 2 GiB. Throws when the pool would hold no block. (`strata generate
    /// --prompts` without a budget; under a budget `run` plans instead.)
    public static func batchEngine(_ loaded: LoadedModel, for requests: [GenerationRequest], kvBlocks: Int? = nil, kvMemory: Int? = nil,
                                   blockSize: Int = 16, maxBatch: Int = 64, kvType: DType = .kvDefault) throws -> BatchEngine {
        let spec = loaded.spec
        try kvType.checkKV(headDim: spec.headDim)
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: kvType)
        let cap = kvMemory ?? (2 << 30)
        let wanted = requests.reduce(0) { $0 + $1.n * (($1.prompt.count + $1.parameters.maxTokens + blockSize) / blockSize) }
        let fit = BatchEngine.blocks(forBytes: cap, spec: spec, blockSize: blockSize, type: kvType)
        let blocks = kvBlocks ?? (kvMemory != nil ? fit : min(wanted, fit))
        guard blocks >= 1 else { throw SessionError.kvPoolTooSmall(bytes: cap, blockBytes: perBlock) }
        return BatchEngine(loaded: loaded, config: .init(blocks: blocks, blockSize: blockSize, maxBatch: maxBatch, kvType: kvType))
    }

    /// What a run produced: each request's output, and the report (measured, and predicted with
    /// the error of each figure when a plan was given).
    public struct Result: Sendable {
        public var outputs: [RequestOutput]
        public var report: RunReport
        /// A mixture's routing over the run (`RoutingCounted`): the rows one sparse layer routed,
        /// and per layer how often each expert was chosen (nil: no experts)
        public var routing: (tokens: Int, layers: [[Int]])? = nil
    }

    /// How a run holds its weights and KV when no plan or placement says so.
    public struct RunOptions: Sendable {
        /// tiered (resident + streamed) or mmap (map the file, the llama.cpp way)
        public var weights: Placement.Weights = .tiered
        public var prefetchDepth = 1
        public var blockSize = 16
        /// KV blocks in RAM (nil: from the workload)
        public var kvBlocks: Int? = nil
        /// the most sequences decoded together
        public var maxBatch = 64
        /// what the KV cache stores keys and values as (`DType.kvTypes`)
        public var kvType: DType = .kvDefault
        /// Under a budget with no plan and no placement: place by the fill-the-budget rule
        /// (first layers resident) instead of planning (`strata generate --no-plan`).
        public var fillTheBudgetRule = false
        /// Checked before each step: true ends every request as `.cancelled` (the CLI wires Ctrl-C).
        public var shouldStop: @Sendable () -> Bool = { false }
        public init(weights: Placement.Weights = .tiered, prefetchDepth: Int = 1, blockSize: Int = 16, kvBlocks: Int? = nil, maxBatch: Int = 64,
                    fillTheBudgetRule: Bool = false, kvType: DType = .kvDefault) {
            self.weights = weights; self.prefetchDepth = prefetchDepth; self.blockSize = blockSize; self.kvBlocks = kvBlocks; self.maxBatch = maxBatch
            self.fillTheBudgetRule = fillTheBudgetRule; self.kvType = kvType
        }
    }

    /// Runs `requests` under the budget with `placement` (default: `plan`'s). With neither and a
    /// budget, the session plans first (with the cached profile, measured on first use), unless
    /// `options.fillTheBudgetRule`; without a budget everything is resident. The report compares
    /// the measured figures with the plan's prediction. `onToken(request, sample, token)` as
    /// tokens come.
    public func run(_ requests: [GenerationRequest], plan given: Plan? = nil, placement: Placement? = nil, options: RunOptions = RunOptions(),
                    kvDisk: SwapSpace? = nil, onToken: (Int, Int, GeneratedToken) -> Void = { _, _, _ in }) throws -> Result {
        let workload = Session.workload(requests, maxBatch: options.maxBatch)
        var plan = given
        // a pipeline stage places its own layers by the rule (a plan is made for one process)
        if plan == nil, placement == nil, ramBudget != nil, !options.fillTheBudgetRule, Pipelines.current == nil {
            plan = try self.plan(workload, batch: workload.batch, kvType: options.kvType)
        }
        let run = try TieredRun(folder: folder, budget: ramBudget, workload: workload, placement: placement ?? plan?.placement,
                                weights: options.weights, prefetchDepth: options.prefetchDepth, blockSize: options.blockSize,
                                kvBlocks: options.kvBlocks, kvType: options.kvType, swap: kvDisk)
        defer { run.shutdown() }
        run.engine.shouldStop = options.shouldStop
        var (outs, report) = try run.run(requests, onToken: onToken)
        if let plan {
            report.compare(with: plan.prediction.reportValues)
            if plan.ruleTokensPerSecond > 0, plan.request.objective == .throughput { report.predictedRuleTokensPerSecond = plan.ruleTokensPerSecond }
        }
        var result = Result(outputs: outs, report: report)
        if let r = run.loaded.model as? RoutingCounted, run.loaded.folder.spec.moe != nil { result.routing = r.routingCounts }
        return result
    }

    /// One event of a streamed run.
    public enum Event: Sendable {
        /// A token of sample `sample` of request `request`.
        case token(request: Int, sample: Int, GeneratedToken)
        /// The run ended: every output and the report.
        case finished(Result)
    }

    /// The same run as an `AsyncSequence`: tokens as they come, then `.finished` with the
    /// statistics. The run goes on a thread of its own; errors end the stream.
    public func events(_ requests: [GenerationRequest], plan: Plan? = nil, maxBatch: Int = 64) -> AsyncThrowingStream<Event, Error> {
        AsyncThrowingStream { continuation in
            let thread = Thread { [self] in
                do {
                    let result = try run(requests, plan: plan, options: RunOptions(maxBatch: maxBatch)) { r, s, t in
                        continuation.yield(.token(request: r, sample: s, t))
                    }
                    continuation.yield(.finished(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// The workload of `requests`: the batch (samples, capped at `maxBatch`), the longest prompt
    /// and the longest output.
    public static func workload(_ requests: [GenerationRequest], maxBatch: Int = 64) -> Workload {
        Workload(batch: max(1, min(maxBatch, requests.reduce(0) { $0 + min(max($1.n, 0), BatchEngine.maxSamples) })),
                 promptTokens: max(1, requests.map { $0.prompt.count }.max() ?? 1),
                 outputTokens: max(1, requests.map { min(max($0.parameters.maxTokens, 0), SamplingParameters.maxTokensLimit) }.max() ?? 1))
    }
}

public enum SessionError: Error, CustomStringConvertible, Sendable {
    case noBudget
    /// A KV pool of `bytes` holds no block of `blockBytes`.
    case kvPoolTooSmall(bytes: Int, blockBytes: Int)
    public var description: String {
        switch self {
        case .noBudget: return "a plan needs a RAM budget (Session(model:ramBudget:))"
        case let .kvPoolTooSmall(b, bb): return "KV pool of \(formatBytes(b)) holds no block of \(formatBytes(bb))"
        }
    }
}
