import Foundation
import StrataMemory
import StrataModels
import StrataTensor

/// One generation request for the batch engine.
public struct GenerationRequest: Sendable {
    public var prompt: [Int]
    public var parameters: SamplingParameters
    /// Parallel samples sharing the prompt's KV blocks (forked after the prefill).
    public var n: Int
    /// Log-probabilities of the prompt's tokens (each given the ones before it), with the `k` most
    /// likely alternatives: nil none (OpenAI's `echo` with `logprobs`, what lm-eval scores with).
    /// Such a prompt is computed, not taken from the prefix cache.
    public var promptLogprobs: Int? = nil
    public init(prompt: [Int], parameters: SamplingParameters, n: Int = 1, promptLogprobs: Int? = nil) {
        self.prompt = prompt; self.parameters = parameters; self.n = n; self.promptLogprobs = promptLogprobs
    }
}

/// What one sample of one request produced.
public struct RequestOutput: Sendable {
    public var index: Int
    public var sample: Int
    public var promptTokens: Int
    public var ids: [Int]
    public var text: String
    public var stopReason: StopReason
    /// Prompt tokens whose KV came from the prefix cache.
    public var cachedPromptTokens: Int
    /// Times this sample was preempted (its KV freed and recomputed later, or swapped to disk).
    public var preemptions: Int
    /// Why this sample failed (stop reason `error`), e.g. the KV swap space was full.
    public var error: String?
    /// The prompt's tokens after the first, each with its log-probability given those before it
    /// (when the request asked: `GenerationRequest.promptLogprobs`).
    public var promptLogprobs: [GeneratedToken]? = nil
}

/// Counters of one `BatchEngine.run`.
public struct BatchStats: Sendable {
    public var steps = 0
    public var promptTokensComputed = 0
    public var decodeTokens = 0
    public var preemptions = 0
    public var prefixHitTokens = 0
    public var copiesOnWrite = 0
    public var maxRunning = 0
    public var seconds = 0.0
    /// Largest (allocated - used) token slots seen after a step, and the sequences then.
    public var peakWastedSlots = 0
    public var wasteSequencesAtPeak = 0
    /// Steps with only decode rows, their tokens and time (the steady state of a batch).
    public var decodeOnlySteps = 0
    public var decodeOnlyTokens = 0
    public var decodeOnlySeconds = 0.0
    /// Time in steps that computed prompt tokens.
    public var prefillSeconds = 0.0
    /// From the start of the run to the first generated token.
    public var firstTokenSeconds = 0.0
    public var blocksSwappedOut = 0
    public var blocksSwappedIn = 0
    public var swapBytesRead = 0
    public var swapBytesWritten = 0
    /// Aggregate tokens/s over decode-only steps.
    public var decodeTokensPerSecond: Double { decodeOnlySeconds > 0 ? Double(decodeOnlyTokens) / decodeOnlySeconds : 0 }
}

/// Continuous batching over a paged KV cache: requests join and leave between steps; each step
/// runs every running sequence's rows through one GEMM per projection (decode rows first, then
/// prompt chunks up to a token budget, so a long prompt does not stall running sequences);
/// when blocks run out the newest running sequence is preempted (its blocks freed, its tokens
/// recomputed when it is admitted again) so every request finishes.
public final class BatchEngine: @unchecked Sendable {
    public struct Config: Sendable {
        public var blockSize = 16
        public var blocks: Int
        /// Most sequences running at once.
        public var maxBatch = 64
        /// Most prompt tokens one sequence computes per step.
        public var prefillChunk = 256
        /// What the KV cache stores keys and values as (`DType.kvTypes`; the caller checks it
        /// against the model's head size: `DType.checkKV`).
        public var kvType: DType = .kvDefault
        public init(blocks: Int, blockSize: Int = 16, maxBatch: Int = 64, prefillChunk: Int = 256, kvType: DType = .kvDefault) {
            self.blocks = blocks; self.blockSize = blockSize; self.maxBatch = maxBatch; self.prefillChunk = prefillChunk; self.kvType = kvType
        }
    }

    public let loaded: LoadedModel
    public let config: Config
    public let kv: PagedKVCache
    /// The KV disk tier: preempted sequences are swapped here instead of recomputed.
    public let swap: SwapSpace?
    /// The run's counters (the scheduler's among them).
    public var stats: BatchStats {
        var s = runnerStats
        let c = scheduler.counters
        s.preemptions = c.preemptions; s.prefixHitTokens = c.prefixHitTokens
        s.blocksSwappedOut = c.blocksSwappedOut; s.blocksSwappedIn = c.blocksSwappedIn
        return s
    }
    private var runnerStats = BatchStats()
    /// Checked before each step of `run`: true ends every request now as `.cancelled`. The
    /// caller wires its interrupt here (the CLI: Ctrl-C, `{ Interrupt.requested }`); the library
    /// reads no signal of its own.
    public var shouldStop: () -> Bool = { false }
    /// Called after every step (tests check the pool's invariants here).
    public var afterStep: ((BatchEngine) -> Void)?

    /// The most parallel samples of one request.
    public static let maxSamples = 256

    public init(loaded: LoadedModel, config: Config, swap: SwapSpace? = nil) {
        self.loaded = loaded
        self.config = config
        self.swap = swap
        let spec = loaded.spec
        kv = PagedKVCache(layers: spec.layers, kvDim: spec.kvDim, headDim: spec.headDim, blockSize: config.blockSize, blockCount: config.blocks,
                          maxContext: min(spec.maxPositions, config.blocks * config.blockSize), type: config.kvType, stored: loaded.model.kvLayers)
        scheduler = Scheduler(kv: kv, swap: swap, maxBatch: config.maxBatch, prefillChunk: config.prefillChunk, maxRows: loaded.model.maxRows,
                              maxLogitRows: loaded.model.maxLogitRows)
    }

    /// Blocks that hold `bytes` of KV for this model, stored as `type`.
    public static func blocks(forBytes bytes: Int, spec: ModelSpec, blockSize: Int, type: DType) -> Int {
        bytes / PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: type)
    }

    /// The queues and what each step runs.
    let scheduler: Scheduler
    private var nextID = 0
    private var nextRequest = 0
    /// Submitted requests not yet taken back by `takeFinished`, by request id.
    private var requests: [Int: GenerationRequest] = [:]
    /// Where each request's tokens go: `(sample, token)`.
    private var sinks: [Int: (Int, GeneratedToken) -> Void] = [:]

    /// Whether anything is waiting or running.
    public var hasWork: Bool { scheduler.hasWork }
    /// Sequences decoding now, and waiting to be admitted.
    public var runningCount: Int { scheduler.running.count }
    public var waitingCount: Int { scheduler.waiting.count }

    /// Checks a request the way `submit` does, without submitting it.
    public func validate(_ r: GenerationRequest) throws {
        let model = loaded.model, maxContext = kv.maxContext
        try r.parameters.validate()
        if r.prompt.isEmpty { throw ModelError.emptyInput }
        if r.n < 1 || r.n > BatchEngine.maxSamples { throw SamplingError.invalid(field: "n", reason: "must be in 1...\(BatchEngine.maxSamples), got \(r.n)") }
        if let k = r.promptLogprobs, k < 0 || k > 20 { throw SamplingError.invalid(field: "logprobs", reason: "prompt log-probabilities: top must be in 0...20, got \(k)") }
        try model.checkTokens(r.prompt)
        if r.prompt.count >= maxContext {
            throw ModelError.contextFull(needed: r.prompt.count + 1, capacity: maxContext)
        }
        let blocksForPrompt = (r.prompt.count + config.blockSize) / config.blockSize
        if blocksForPrompt > config.blocks {
            throw BlockPoolError.outOfBlocks(requested: blocksForPrompt, free: config.blocks, total: config.blocks)
        }
    }

    /// Queues `request` (it joins the next step, beside whatever is running) and returns its id;
    /// `onToken(sample, token)` sees each token as it is made (on the thread that calls `step`).
    @discardableResult
    public func submit(_ request: GenerationRequest, onToken: @escaping (Int, GeneratedToken) -> Void = { _, _ in }) throws -> Int {
        try validate(request)
        if !hasWork { runStart = now() }
        let id = nextRequest
        nextRequest += 1
        requests[id] = request
        sinks[id] = onToken
        let s = EngineSequence(id: nextID, request: id, sample: 0, arrival: nextID, prompt: request.prompt.map(Int32.init),
                               out: SequenceOutput(loaded: loaded, parameters: request.parameters, prompt: request.prompt))
        s.promptLogprobTop = request.promptLogprobs
        scheduler.enqueue(s)
        nextID += 1
        return id
    }

    /// Ends request `id` now: its sequences leave the queues, their KV blocks (and swap slots)
    /// are freed at once, and it finishes with `.cancelled` and what it generated so far.
    public func cancel(_ id: Int) { scheduler.cancel(request: id) }

    /// The outputs of the requests that have finished (every sample of each; of `only` those
    /// when given), taken out of the engine; samples in order.
    public func takeFinished(only: Set<Int>? = nil) -> [(request: Int, outputs: [RequestOutput])] {
        var out: [(Int, [RequestOutput])] = []
        let live = Set(scheduler.waiting.map(\.request) + scheduler.running.map(\.request))
        let done = Set(scheduler.finished.map(\.request)).subtracting(live)
        for id in done.sorted() where only?.contains(id) ?? true {
            guard let r = requests[id] else { continue }
            // a request with n samples is done when all n have finished
            let count = scheduler.finished.reduce(0) { $0 + ($1.request == id ? 1 : 0) }
            if count < r.n && !scheduler.finished.contains(where: { $0.request == id && $0.stop == .cancelled }) { continue }
            out.append((id, scheduler.takeFinished(request: id).sorted { $0.sample < $1.sample }.map(output)))
            requests[id] = nil
            sinks[id] = nil
        }
        return out
    }

    private func output(_ s: EngineSequence) -> RequestOutput {
        RequestOutput(index: s.request, sample: s.sample, promptTokens: s.promptCount, ids: s.generated, text: s.out.text.text,
                      stopReason: s.stop ?? .maxTokens, cachedPromptTokens: s.cached, preemptions: s.preemptions, error: s.error,
                      promptLogprobs: s.promptLogprobTop != nil ? s.promptLogprobs : nil)
    }

    /// Submits all `requests` and steps until nothing is left: every request to completion,
    /// with whatever else was submitted. `onToken(request, sample, token)` sees every token as it
    /// is made (`request` is the index in `requests`). Outputs come back in request order,
    /// samples in order.
    public func run(_ requests: [GenerationRequest],
                    onToken: (Int, Int, GeneratedToken) -> Void = { _, _, _ in }) throws -> [RequestOutput] {
        for (i, r) in requests.enumerated() {
            do { try validate(r) } catch let SamplingError.invalid(field, reason) {
                throw SamplingError.invalid(field: field, reason: reason + " (request \(i))")
            }
        }
        let t0 = now()
        return try withoutActuallyEscaping(onToken) { sink in
            var ids: [Int] = []
            for r in requests {
                let index = ids.count
                ids.append(try submit(r) { sample, token in sink(index, sample, token) })
            }
            defer { for id in ids { sinks[id] = nil } }
            do {
                while hasWork {
                    if shouldStop() {
                        // Ctrl-C: every request ends now with what it has (stop reason .cancelled)
                        for id in ids { cancel(id) }
                        break
                    }
                    try step()
                }
            } catch {
                // the run failed: its requests leave the engine (blocks freed), nothing is left queued
                for id in ids { cancel(id) }
                _ = takeFinished(only: Set(ids))
                throw error
            }
            runnerStats.copiesOnWrite = kv.copiesOnWrite
            runnerStats.seconds = now() - t0
            runnerStats.swapBytesRead = swap?.bytesRead ?? 0
            runnerStats.swapBytesWritten = swap?.bytesWritten ?? 0
            let byID = Dictionary(uniqueKeysWithValues: takeFinished(only: Set(ids)).map { ($0.request, $0.outputs) })
            return ids.enumerated().flatMap { (index, id) in
                (byID[id] ?? []).map { o -> RequestOutput in var o = o; o.index = index; return o }
            }
        }
    }

    /// One step: schedule, then run the forward pass over every scheduled row (vLLM's model
    /// runner), commit their KV and sample where a row produced logits. Requests submitted
    /// since the last step join this one.
    public func step() throws {
        guard hasWork else { return }
        let model = loaded.model
        let spec = model.spec
        let scheduled = try scheduler.schedule()
        let layout = scheduled.layout, decodeOnly = scheduled.decodeOnly
        runnerStats.maxRunning = max(runnerStats.maxRunning, scheduler.running.count)
        // one forward pass over every row
        let stepStart = now()
        defer {
            if decodeOnly {
                runnerStats.decodeOnlySteps += 1
                runnerStats.decodeOnlyTokens += layout.totalRows
                runnerStats.decodeOnlySeconds += now() - stepStart
            } else {
                runnerStats.prefillSeconds += now() - stepStart
            }
        }
        let logits = try scheduled.tokens.withUnsafeBufferPointer { try model.forward($0, layout: layout, kv: kv) }
        runnerStats.steps += 1
        // commit KV, sample where a row produced logits
        var logitRow = 0
        var forks: [(EngineSequence, Int)] = []
        for (e, s) in zip(layout.entries, scheduled.sequences) {
            scheduled.tokens.withUnsafeBufferPointer { kv.commit(s.id, tokens: UnsafeBufferPointer(rebasing: $0[e.rowStart..<(e.rowStart + e.rowCount)])) }
            s.computed += e.rowCount
            if e.rowCount > 1 || s.generated.isEmpty { runnerStats.promptTokensComputed += e.rowCount } else { runnerStats.decodeTokens += 1 }
            guard e.logits != .none else { continue }
            if e.logits == .all {
                // a prompt chunk whose log-probabilities were asked for: row r predicts the token after it
                let first = logitRow
                logitRow += e.rowCount
                recordPromptLogprobs(s, entry: e, logits: logits, firstRow: first)
                guard s.prefillDone else { continue }
            } else {
                logitRow += 1
            }
            let row = UnsafeBufferPointer(rebasing: logits[((logitRow - 1) * spec.vocabSize)..<(logitRow * spec.vocabSize)])
            guard let request = requests[s.request] else { continue }
            if request.n > 1 && s.sample == 0 && !s.forked {
                s.forked = true
                forks.append((s, logitRow - 1))
            }
            try emit(s, row: row, request: request, finish: finish)
        }
        // parallel samples: fork after the prompt, each child samples from the same logits
        for (parent, r) in forks {
            let row = UnsafeBufferPointer(rebasing: logits[(r * spec.vocabSize)..<((r + 1) * spec.vocabSize)])
            guard let request = requests[parent.request] else { continue }
            for k in 1..<request.n {
                var p = request.parameters
                p.seed = p.seed.map { $0 &+ UInt64(k) }
                let child = EngineSequence(id: nextID, request: parent.request, sample: k, arrival: parent.arrival, prompt: Array(parent.tokens.prefix(parent.promptCount)),
                                out: SequenceOutput(loaded: loaded, parameters: p, prompt: request.prompt))
                nextID += 1
                child.cached = parent.cached
                child.forked = true
                try emit(child, row: row, request: request, finish: { s, r in finish(s, r) })
                if child.stop != nil { continue }
                if kv.contains(parent.id) {
                    kv.fork(parent.id, into: child.id)
                    child.computed = parent.promptCount
                    scheduler.startRunning(child)
                } else {
                    // the parent already finished: the child recomputes its prompt and first token
                    child.tokens = child.tokens + child.generated.map(Int32.init)
                    child.computed = 0
                    scheduler.enqueue(child)
                }
            }
        }
        let waste = kv.wastedSlots
        if waste > runnerStats.peakWastedSlots { runnerStats.peakWastedSlots = waste; runnerStats.wasteSequencesAtPeak = scheduler.running.count }
        afterStep?(self)
    }

    private var runStart = 0.0

    /// The log-probabilities of the prompt tokens an `.all` chunk predicts (each row's next
    /// prompt token), appended in order (a recomputed chunk after a preemption adds nothing).
    private func recordPromptLogprobs(_ s: EngineSequence, entry e: BatchLayout.Entry, logits: UnsafeBufferPointer<Float>, firstRow: Int) {
        let v = loaded.model.spec.vocabSize, top = s.promptLogprobTop ?? 0
        for r in 0..<e.rowCount {
            let target = e.startPosition + r + 1   // the prompt token this row predicts
            guard target < s.promptCount, target == s.promptLogprobs.count + 1 else { continue }
            let row = UnsafeBufferPointer(rebasing: logits[((firstRow + r) * v)..<((firstRow + r + 1) * v)])
            let (lp, alternatives) = Sampler.logprob(of: Int(s.tokens[target]), in: row, top: top)
            s.promptLogprobs.append(GeneratedToken(id: Int(s.tokens[target]), text: "", logprob: lp, topLogprobs: alternatives))
        }
    }

    /// A sequence is done: the text it held back (a possible stop string's start) goes out, then
    /// the scheduler retires it.
    private func finish(_ s: EngineSequence, _ reason: StopReason) {
        if reason != .stopString, case let tail = s.out.finish(), !tail.isEmpty {
            sinks[s.request]?(s.sample, GeneratedToken(id: -1, text: tail))
        }
        scheduler.retire(s, reason)
    }

    private func emit(_ s: EngineSequence, row: UnsafeBufferPointer<Float>, request: GenerationRequest,
                      finish: (EngineSequence, StopReason) -> Void) throws {
        let p = request.parameters
        if runnerStats.firstTokenSeconds == 0 { runnerStats.firstTokenSeconds = now() - runStart }
        if p.maxTokens == 0 { finish(s, .maxTokens); return }
        let next: (token: GeneratedToken, stop: StopReason?)
        let position = s.promptCount + s.generated.count - 1, full = s.promptCount + s.generated.count + 1 >= kv.maxContext
        do {
            next = try s.out.next(row, model: loaded.model, position: position, contextFull: full) { Array(s.tokens.prefix(s.promptCount)) }
        } catch let e as ModelError {
            switch e { case .nonFiniteLogits, .grammarDeadEnd: break; default: throw e }
            // this sequence fails with the reason; the others go on
            s.error = "\(e)"
            finish(s, .error)
            return
        }
        sinks[s.request]?(s.sample, next.token)
        if let stop = next.stop { finish(s, stop) }
    }
}
