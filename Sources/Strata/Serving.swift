import Foundation
import StrataMemory
import StrataModels

/// The one continuous-batching engine behind a server: requests are submitted from any thread
/// while it runs and join the next step; tokens go back through each request's callback (on the
/// engine's thread); a cancelled request (its client went away) leaves at the next step with
/// its KV blocks freed. Limits: at most `maxRunning` sequences decode together (the engine's
/// batch), at most `maxQueued` requests wait; beyond that `submit` throws `.busy`. `drain()`
/// refuses new requests (`.draining`) and returns when the in-flight ones have finished.
public final class ServingEngine: @unchecked Sendable {
    /// What a request sees, in order: tokens of each sample, then `.finished` (or `.failed`).
    public enum Event: Sendable {
        case token(sample: Int, GeneratedToken)
        case finished([RequestOutput])
        case failed(String)
    }

    public enum SubmitError: Error, CustomStringConvertible, Sendable, Equatable {
        /// Too many requests running and queued (HTTP 429).
        case busy(running: Int, queued: Int)
        /// Shutting down (HTTP 503).
        case draining
        public var description: String {
            switch self {
            case let .busy(r, q): return "the server is busy (\(r) requests running, \(q) queued); retry later"
            case .draining: return "the server is shutting down"
            }
        }
    }

    /// Counters for /metrics (a snapshot).
    public struct Metrics: Sendable {
        public var requestsTotal = 0
        public var requestsFinished = 0
        public var requestsCancelled = 0
        public var requestsFailed = 0
        public var requestsRejected = 0
        public var promptTokensTotal = 0
        public var generatedTokensTotal = 0
        /// sequences waiting to be admitted (and requests not yet handed to the engine)
        public var queued = 0
        /// requests in flight (submitted, not finished)
        public var running = 0
        public var runningSequences = 0
        public var kvBlocksTotal = 0
        public var kvBlocksUsed = 0
        public var kvBlocksFree = 0
        public var kvBlocksCached = 0
        public var ledgerBytes = 0
        public var ledgerPeakBytes = 0
        public var ledgerBudgetBytes: Int? = nil
        public var diskBytesRead = 0
        public var steps = 0
    }

    public let run: TieredRun
    public var engine: BatchEngine { run.engine }
    public let maxQueued: Int
    /// The longest prompt plus output a request can have.
    public var maxContext: Int { engine.kv.maxContext }

    private let lock = NSCondition()
    private var pending: [(Int, GenerationRequest, @Sendable (Event) -> Void)] = []
    /// work that must run on the engine's thread (it owns the model), run between steps
    private var tasks: [() -> Void] = []
    private var cancels: Set<Int> = []
    private var sinks: [Int: @Sendable (Event) -> Void] = [:]
    /// handle -> engine request id, once submitted to the engine
    private var engineIDs: [Int: Int] = [:]
    private var nextHandle = 0
    private var inFlight = 0
    private var draining = false
    private var stopped = false
    private var metrics = Metrics()
    private var thread: Thread?

    public init(run: TieredRun, maxQueued: Int = 64) {
        self.run = run
        self.maxQueued = maxQueued
        metrics.kvBlocksTotal = run.engine.kv.pool.blockCount
        metrics.ledgerBudgetBytes = run.ledger.budget
    }

    /// Starts the engine's thread.
    public func start() {
        updateGauges()   // before the engine's thread exists: /metrics is right from the first request
        let t = Thread { [self] in loop() }
        t.stackSize = 8 << 20
        t.name = "strata-engine"
        thread = t
        t.start()
    }

    /// Checks `request` (throws what `BatchEngine.validate` throws: a prompt over the context,
    /// bad sampling values), then queues it; returns a handle for `cancel`.
    public func submit(_ request: GenerationRequest, onEvent: @escaping @Sendable (Event) -> Void) throws -> Int {
        try engine.validate(request)
        lock.lock()
        defer { lock.unlock() }
        if draining || stopped { metrics.requestsRejected += 1; throw SubmitError.draining }
        let maxRunning = engine.config.maxBatch
        if inFlight >= maxRunning + maxQueued {
            metrics.requestsRejected += 1
            throw SubmitError.busy(running: min(inFlight, maxRunning), queued: max(0, inFlight - maxRunning))
        }
        let h = nextHandle
        nextHandle += 1
        inFlight += 1
        metrics.requestsTotal += 1
        metrics.promptTokensTotal += request.prompt.count
        pending.append((h, request, onEvent))
        lock.signal()
        return h
    }

    /// Runs `work` with the model on the engine's thread between two steps (the model is not
    /// thread-safe) and hands its result to `done` there. Refused while draining.
    public func onEngine<T>(_ work: @escaping (CausalLM) throws -> T, done: @escaping @Sendable (Result<T, Error>) -> Void) throws {
        lock.lock()
        defer { lock.unlock() }
        if draining || stopped { throw SubmitError.draining }
        let model = run.engine.loaded.model
        tasks.append { done(Result { try work(model) }) }
        lock.signal()
    }

    /// Ends request `handle` (a client that went away): it leaves at the next step, its blocks freed.
    public func cancel(_ handle: Int) {
        lock.lock()
        cancels.insert(handle)
        lock.signal()
        lock.unlock()
    }

    public func snapshot() -> Metrics {
        lock.lock()
        defer { lock.unlock() }
        return metrics
    }

    /// Refuses new requests and waits until every request in flight has finished.
    public func drain() {
        lock.lock()
        draining = true
        while inFlight > 0 { lock.wait() }
        lock.unlock()
    }

    /// Stops the engine's thread (after `drain`, or cancelling what runs).
    public func stop() {
        lock.lock()
        stopped = true
        draining = true
        lock.signal()
        lock.unlock()
    }

    private func loop() {
        while true {
            lock.lock()
            while pending.isEmpty && cancels.isEmpty && tasks.isEmpty && !engine.hasWork && !stopped { lock.wait() }
            if stopped && !engine.hasWork && pending.isEmpty { lock.unlock(); break }
            let work = tasks
            tasks.removeAll()
            let newOnes = pending
            pending.removeAll()
            let cancelled = cancels
            cancels.removeAll()
            lock.unlock()

            for w in work { w() }
            for (h, r, sink) in newOnes {
                do {
                    let id = try engine.submit(r) { sample, token in sink(.token(sample: sample, token)) }
                    lock.lock(); engineIDs[h] = id; sinks[h] = sink; lock.unlock()
                } catch {
                    sink(.failed("\(error)"))
                    finish(h, failed: true)
                }
            }
            for h in cancelled {
                lock.lock()
                let id = engineIDs[h]
                lock.unlock()
                if let id {
                    engine.cancel(id)
                    _ = engine.takeFinished(only: [id])
                    finish(h, cancelled: true)
                }
            }
            if stopped {
                // shutting down without a drain: everything still running ends now
                lock.lock(); let live = engineIDs; lock.unlock()
                for (h, id) in live { engine.cancel(id); _ = engine.takeFinished(only: [id]); sinks[h]?(.failed("the server is shutting down")); finish(h, failed: true) }
                continue
            }
            guard engine.hasWork else { continue }
            do {
                try engine.step()
            } catch {
                // a failed step (e.g. the KV swap space full): its requests fail, the engine goes on
                lock.lock(); let live = engineIDs; lock.unlock()
                for (h, id) in live {
                    engine.cancel(id)
                    _ = engine.takeFinished(only: [id])
                    sinks[h]?(.failed("\(error)"))
                    finish(h, failed: true)
                }
                continue
            }
            let done = engine.takeFinished()
            if !done.isEmpty {
                lock.lock()
                let byEngine = Dictionary(uniqueKeysWithValues: engineIDs.map { ($0.value, $0.key) })
                lock.unlock()
                for (id, outs) in done {
                    guard let h = byEngine[id] else { continue }
                    let failed = outs.contains { $0.stopReason == .error }
                    sinks[h]?(.finished(outs))
                    lock.lock(); metrics.generatedTokensTotal += outs.reduce(0) { $0 + $1.ids.count }; lock.unlock()
                    finish(h, failed: failed)
                }
            }
            updateGauges()
        }
        updateGauges()
    }

    private func finish(_ h: Int, cancelled: Bool = false, failed: Bool = false) {
        lock.lock()
        if engineIDs.removeValue(forKey: h) != nil || !cancelled {
            inFlight -= 1
            if cancelled { metrics.requestsCancelled += 1 } else if failed { metrics.requestsFailed += 1 } else { metrics.requestsFinished += 1 }
        }
        sinks[h] = nil
        lock.broadcast()
        lock.unlock()
        updateGauges()
    }

    /// Gauges read on the engine's thread (the engine is not thread-safe), published under the lock.
    private func updateGauges() {
        let kv = engine.kv
        let io = (run.store as? TieredWeightStore)?.stats.bytesRead ?? 0
        let swapRead = run.engine.swap?.bytesRead ?? 0
        lock.lock()
        metrics.queued = engine.waitingCount + pending.count
        metrics.running = inFlight
        metrics.runningSequences = engine.runningCount
        metrics.kvBlocksUsed = kv.pool.blockCount - kv.pool.available
        metrics.kvBlocksFree = kv.pool.available
        metrics.kvBlocksCached = kv.pool.evictableCount
        metrics.ledgerBytes = run.ledger.total
        metrics.ledgerPeakBytes = run.ledger.peak
        metrics.diskBytesRead = io + swapRead
        metrics.steps = engine.stats.steps
        lock.unlock()
    }
}
