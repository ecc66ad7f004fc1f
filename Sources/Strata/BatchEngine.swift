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
    public init(prompt: [Int], parameters: SamplingParameters, n: Int = 1) {
        self.prompt = prompt; self.parameters = parameters; self.n = n
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
    public private(set) var stats = BatchStats()
    /// Checked before each step of `run`: true ends every request now as `.cancelled`. The
    /// caller wires its interrupt here (the CLI: Ctrl-C, `{ Interrupt.requested }`); the library
    /// reads no signal of its own.
    public var shouldStop: () -> Bool = { false }
    /// Called after every step (tests check the pool's invariants here).
    public var afterStep: ((BatchEngine) -> Void)?

    final class Seq {
        let id: Int
        let request: Int
        let sample: Int
        let arrival: Int
        let promptCount: Int
        /// tokens to compute before sampling: the prompt, or prompt + generated after a preemption
        var tokens: [Int32]
        var computed = 0
        /// sampling, detokenizing, stop strings (`out.text.text` is the text so far)
        var out: SequenceOutput
        var generated: [Int] { out.generated }
        var stop: StopReason?
        var cached = 0
        var preemptions = 0
        var forked = false
        var swapped: SwappedSequence?
        var error: String?
        init(id: Int, request: Int, sample: Int, arrival: Int, prompt: [Int32], out: SequenceOutput) {
            self.id = id; self.request = request; self.sample = sample; self.arrival = arrival
            self.promptCount = prompt.count; self.tokens = prompt; self.out = out
        }
        var prefillDone: Bool { computed >= tokens.count }
    }

    /// The most parallel samples of one request.
    public static let maxSamples = 256

    public init(loaded: LoadedModel, config: Config, swap: SwapSpace? = nil) {
        self.loaded = loaded
        self.config = config
        self.swap = swap
        let spec = loaded.spec
        kv = PagedKVCache(layers: spec.layers, kvDim: spec.kvDim, headDim: spec.headDim, blockSize: config.blockSize, blockCount: config.blocks,
                          maxContext: min(spec.maxPositions, config.blocks * config.blockSize), type: config.kvType)
    }

    /// Blocks that hold `bytes` of KV for this model, stored as `type`.
    public static func blocks(forBytes bytes: Int, spec: ModelSpec, blockSize: Int, type: DType) -> Int {
        bytes / PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: type)
    }

    // MARK: state between steps (the scheduler's queues)

    private var waiting: [Seq] = []
    private var running: [Seq] = []
    private var finished: [Seq] = []
    private var nextID = 0
    private var nextRequest = 0
    /// Submitted requests not yet taken back by `takeFinished`, by request id.
    private var requests: [Int: GenerationRequest] = [:]
    /// Where each request's tokens go: `(sample, token)`.
    private var sinks: [Int: (Int, GeneratedToken) -> Void] = [:]
    private lazy var layout = BatchLayout(capacity: config.maxBatch + 8)
    private lazy var rowTokens = [Int32](repeating: 0, count: loaded.model.maxRows)
    private var rowSeq: [Seq] = []

    /// Whether anything is waiting or running.
    public var hasWork: Bool { !waiting.isEmpty || !running.isEmpty }
    /// Sequences decoding now, and waiting to be admitted.
    public var runningCount: Int { running.count }
    public var waitingCount: Int { waiting.count }

    /// Checks a request the way `submit` does, without submitting it.
    public func validate(_ r: GenerationRequest) throws {
        let model = loaded.model, maxContext = kv.maxContext
        try r.parameters.validate()
        if r.prompt.isEmpty { throw ModelError.emptyInput }
        if r.n < 1 || r.n > BatchEngine.maxSamples { throw SamplingError.invalid(field: "n", reason: "must be in 1...\(BatchEngine.maxSamples), got \(r.n)") }
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
        waiting.append(Seq(id: nextID, request: id, sample: 0, arrival: nextID, prompt: request.prompt.map(Int32.init),
                           out: SequenceOutput(loaded: loaded, parameters: request.parameters, prompt: request.prompt)))
        nextID += 1
        return id
    }

    /// Ends request `id` now: its sequences leave the queues, their KV blocks (and swap slots)
    /// are freed at once, and it finishes with `.cancelled` and what it generated so far.
    public func cancel(_ id: Int) {
        for s in waiting where s.request == id {
            if let sw = s.swapped { swap?.free(sw.slots); s.swapped = nil }
            if kv.contains(s.id) { kv.free(s.id) }
            s.stop = .cancelled
            finished.append(s)
        }
        waiting.removeAll { $0.request == id }
        for s in running where s.request == id {
            kv.free(s.id)
            s.stop = .cancelled
            finished.append(s)
        }
        running.removeAll { $0.request == id }
    }

    /// The outputs of the requests that have finished (every sample of each; of `only` those
    /// when given), taken out of the engine; samples in order.
    public func takeFinished(only: Set<Int>? = nil) -> [(request: Int, outputs: [RequestOutput])] {
        var out: [(Int, [RequestOutput])] = []
        let live = Set(waiting.map(\.request) + running.map(\.request))
        let done = Set(finished.map(\.request)).subtracting(live)
        for id in done.sorted() where only?.contains(id) ?? true {
            guard let r = requests[id] else { continue }
            let seqs = finished.filter { $0.request == id }
            // a request with n samples is done when all n have finished
            if seqs.count < r.n && seqs.allSatisfy({ $0.stop != .cancelled }) { continue }
            out.append((id, seqs.sorted { $0.sample < $1.sample }.map(output)))
            finished.removeAll { $0.request == id }
            requests[id] = nil
            sinks[id] = nil
        }
        return out
    }

    private func output(_ s: Seq) -> RequestOutput {
        RequestOutput(index: s.request, sample: s.sample, promptTokens: s.promptCount, ids: s.generated, text: s.out.text.text,
                      stopReason: s.stop ?? .maxTokens, cachedPromptTokens: s.cached, preemptions: s.preemptions, error: s.error)
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
            stats.copiesOnWrite = kv.copiesOnWrite
            stats.seconds = now() - t0
            stats.swapBytesRead = swap?.bytesRead ?? 0
            stats.swapBytesWritten = swap?.bytesWritten ?? 0
            let byID = Dictionary(uniqueKeysWithValues: takeFinished(only: Set(ids)).map { ($0.request, $0.outputs) })
            return ids.enumerated().flatMap { (index, id) in
                (byID[id] ?? []).map { o -> RequestOutput in var o = o; o.index = index; return o }
            }
        }
    }

    private func preempt(_ s: Seq) {
        s.preemptions += 1
        stats.preemptions += 1
        running.removeAll { $0 === s }
        if let swap, s.computed > 0, s.prefillDone {
            // the disk tier: write the blocks out, read them back on re-admission
            do {
                let n = kv.blockTable(of: s.id).count
                s.swapped = try kv.swapOut(s.id, to: swap)
                stats.blocksSwappedOut += n
            } catch {
                // no room on disk (or a write error): this sequence fails, the others go on
                kv.free(s.id)
                s.error = "\(error)"
                s.stop = .error
                finished.append(s)
                return
            }
        } else {
            kv.free(s.id)
            s.tokens = s.tokens.prefix(s.promptCount) + s.generated.map(Int32.init)
            s.computed = 0
        }
        let at = waiting.firstIndex { $0.arrival > s.arrival } ?? waiting.count
        waiting.insert(s, at: at)
    }

    private func finish(_ s: Seq, _ reason: StopReason) {
        s.stop = reason
        if reason != .stopString, case let tail = s.out.finish(), !tail.isEmpty {
            sinks[s.request]?(s.sample, GeneratedToken(id: -1, text: tail))
        }
        if kv.contains(s.id) { kv.free(s.id) }
        running.removeAll { $0 === s }
        finished.append(s)
    }

    /// The scheduler's half of a step (vLLM's `schedule()`): which rows run now, with which
    /// blocks. Fills `layout`, `rowTokens` and `rowSeq`; preempts when blocks run out. Returns
    /// false when nothing could be scheduled even after preempting (a lone sequence the pool
    /// cannot hold: an error).
    private func schedule() throws -> Bool {
        let model = loaded.model
        while true {
            layout.removeAll()
            rowSeq.removeAll(keepingCapacity: true)
            var swappedIn = false
            var budget = model.maxRows
            // 1. one decode row per running sequence whose prompt is done (oldest first)
            var i = 0
            while i < running.count && budget > 0 {
                let s = running[i]
                guard s.prefillDone else { i += 1; continue }
                do {
                    try kv.reserve(s.id, newTokens: 1)
                } catch is BlockPoolError {
                    // out of blocks: preempt the newest running sequence not already in this
                    // step (possibly this one), then retry
                    let victim = running.filter { r in !rowSeq.contains { $0 === r } }.max { $0.arrival < $1.arrival }!
                    preempt(victim)
                    i = running.firstIndex { $0 === s } ?? running.count
                    continue
                }
                rowTokens[layout.totalRows] = Int32(s.generated.last!)
                layout.append(sequence: s.id, rows: 1, startPosition: s.computed, logits: .last)
                rowSeq.append(s)
                budget -= 1
                i += 1
            }
            // 2. prompt chunks of running sequences, then admit waiting ones
            func addChunk(_ s: Seq) throws -> Bool {
                let n = min(s.tokens.count - s.computed, config.prefillChunk, budget)
                if n <= 0 { return false }
                try kv.reserve(s.id, newTokens: n)
                for j in 0..<n { rowTokens[layout.totalRows + j] = s.tokens[s.computed + j] }
                let completes = s.computed + n == s.tokens.count
                layout.append(sequence: s.id, rows: n, startPosition: s.computed, logits: completes ? .last : .none)
                rowSeq.append(s)
                budget -= n
                return true
            }
            for s in running where !s.prefillDone && budget > 0 {
                if (try? addChunk(s)) != true { break }
            }
            while budget > 0, running.count < config.maxBatch, let w = waiting.first {
                if let sw = w.swapped, let swap {
                    // swapped out: back in when its blocks (and one to grow) fit
                    if sw.slots.count + 1 > kv.pool.available && !running.isEmpty { break }
                    do {
                        try kv.swapIn(w.id, from: sw, swap: swap)
                    } catch {
                        if running.isEmpty { throw error }
                        break
                    }
                    stats.blocksSwappedIn += sw.slots.count
                    w.swapped = nil
                    waiting.removeFirst()
                    running.append(w)
                    swappedIn = true
                    continue
                }
                let reused = kv.startSequence(w.id, prompt: w.tokens)
                w.computed = reused
                if w.preemptions == 0 { w.cached = reused }
                stats.prefixHitTokens += reused
                // admit only if its whole prompt fits now (plus one block per running sequence to grow)
                let need = kv.blocksNeeded(w.id, newTokens: w.tokens.count - reused + 1)
                if need > kv.pool.available - running.count && !running.isEmpty {
                    kv.free(w.id)
                    break
                }
                waiting.removeFirst()
                running.append(w)
                do {
                    if try !addChunk(w) { break }
                } catch {
                    preempt(w)
                    break
                }
            }
            if layout.totalRows == 0 {
                // a sequence swapped back in during this pass decodes in the next pass (the
                // decode rows were laid out before it came back): schedule again
                if swappedIn { continue }
                // nothing could be scheduled: make room by preempting the newest running sequence;
                // a lone sequence that still does not fit means the pool is too small for it
                if running.count > 1, let victim = running.max(by: { $0.arrival < $1.arrival }) {
                    preempt(victim)
                    continue
                }
                throw BlockPoolError.outOfBlocks(requested: 1, free: kv.pool.available, total: kv.pool.blockCount)
            }
            return true
        }
    }

    /// One step: schedule, then run the forward pass over every scheduled row (vLLM's model
    /// runner), commit their KV and sample where a row produced logits. Requests submitted
    /// since the last step join this one.
    public func step() throws {
        guard hasWork else { return }
        let model = loaded.model
        let spec = model.spec
        _ = try schedule()
        stats.maxRunning = max(stats.maxRunning, running.count)
        // 3. one forward pass over every row
        let decodeOnly = layout.entries.allSatisfy { $0.rowCount == 1 } && rowSeq.allSatisfy { !$0.generated.isEmpty && $0.prefillDone }
        let stepStart = now()
        defer {
            if decodeOnly {
                stats.decodeOnlySteps += 1
                stats.decodeOnlyTokens += layout.totalRows
                stats.decodeOnlySeconds += now() - stepStart
            } else {
                stats.prefillSeconds += now() - stepStart
            }
        }
        let logits = try rowTokens.withUnsafeBufferPointer {
            try model.forward(UnsafeBufferPointer(rebasing: $0[0..<layout.totalRows]), layout: layout, kv: kv)
        }
        stats.steps += 1
        // 4. commit KV, sample where a row produced logits
        var logitRow = 0
        var forks: [(Seq, Int)] = []
        for (e, s) in zip(layout.entries, rowSeq) {
            rowTokens.withUnsafeBufferPointer { kv.commit(s.id, tokens: UnsafeBufferPointer(rebasing: $0[e.rowStart..<(e.rowStart + e.rowCount)])) }
            s.computed += e.rowCount
            if e.rowCount > 1 || s.generated.isEmpty { stats.promptTokensComputed += e.rowCount } else { stats.decodeTokens += 1 }
            guard e.logits != .none else { continue }
            let row = UnsafeBufferPointer(rebasing: logits[(logitRow * spec.vocabSize)..<((logitRow + 1) * spec.vocabSize)])
            logitRow += 1
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
                let child = Seq(id: nextID, request: parent.request, sample: k, arrival: parent.arrival, prompt: Array(parent.tokens.prefix(parent.promptCount)),
                                out: SequenceOutput(loaded: loaded, parameters: p, prompt: request.prompt))
                nextID += 1
                child.cached = parent.cached
                child.forked = true
                try emit(child, row: row, request: request, finish: { s, r in finish(s, r) })
                if child.stop != nil { continue }
                if kv.contains(parent.id) {
                    kv.fork(parent.id, into: child.id)
                    child.computed = parent.promptCount
                    running.append(child)
                } else {
                    // the parent already finished: the child recomputes its prompt and first token
                    child.tokens = child.tokens + child.generated.map(Int32.init)
                    child.computed = 0
                    waiting.append(child)
                }
            }
        }
        let waste = kv.wastedSlots
        if waste > stats.peakWastedSlots { stats.peakWastedSlots = waste; stats.wasteSequencesAtPeak = running.count }
        afterStep?(self)
    }

    private var runStart = 0.0

    private func emit(_ s: Seq, row: UnsafeBufferPointer<Float>, request: GenerationRequest,
                      finish: (Seq, StopReason) -> Void) throws {
        let p = request.parameters
        if stats.firstTokenSeconds == 0 { stats.firstTokenSeconds = now() - runStart }
        if p.maxTokens == 0 { finish(s, .maxTokens); return }
        let next: (token: GeneratedToken, stop: StopReason?)
        let position = s.promptCount + s.generated.count - 1, full = s.promptCount + s.generated.count + 1 >= kv.maxContext
        do {
            next = try s.out.next(row, model: loaded.model, position: position, contextFull: full) { Array(s.tokens.prefix(s.promptCount)) }
        } catch let e as ModelError {
            guard case .nonFiniteLogits = e else { throw e }
            // this sequence fails with the reason; the others go on
            s.error = "\(e)"
            finish(s, .error)
            return
        }
        sinks[s.request]?(s.sample, next.token)
        if let stop = next.stop { finish(s, stop) }
    }
}
