import StrataMemory
import StrataModels
import StrataTensor

/// One sample of one request in the batch engine: its tokens, how far its KV is computed, and
/// its output side (sampling, detokenizing, stop strings: `SequenceOutput`).
final class EngineSequence {
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
    /// Prompt log-probabilities asked for (top n) and those computed so far (entry i: token i + 1).
    var promptLogprobTop: Int?
    var promptLogprobs: [GeneratedToken] = []
    /// Whether this sequence's prompt chunks return logits for every row.
    var wantsPromptLogits: Bool { promptLogprobTop != nil && promptLogprobs.count < promptCount - 1 }
    init(id: Int, request: Int, sample: Int, arrival: Int, prompt: [Int32], out: SequenceOutput) {
        self.id = id; self.request = request; self.sample = sample; self.arrival = arrival
        self.promptCount = prompt.count; self.tokens = prompt; self.out = out
    }
    var prefillDone: Bool { computed >= tokens.count }
}

/// What one step runs (vLLM's `SchedulerOutput`): the rows of the forward pass grouped by
/// sequence (entry i of `layout` is `sequences[i]`'s, its KV blocks already reserved), the token
/// of each row, and whether every row decodes. The scheduler's buffers, reused from step to step:
/// the value lives until the runner has run it.
struct ScheduledStep {
    let layout: BatchLayout
    let sequences: [EngineSequence]
    let tokens: ArraySlice<Int32>
    let decodeOnly: Bool
}

/// The scheduler of continuous batching over a paged KV cache: the queues (waiting, running,
/// finished), admission, prompt chunks under a row budget, block reservation, preemption (to
/// the swap space when there is one, else recomputation). It runs no model: `schedule()` says
/// what the next step computes and `BatchEngine` runs it.
final class Scheduler {
    struct Counters {
        var preemptions = 0
        var prefixHitTokens = 0
        var blocksSwappedOut = 0
        var blocksSwappedIn = 0
    }
    let kv: PagedKVCache
    let swap: SwapSpace?
    let maxBatch: Int
    let prefillChunk: Int
    /// Most rows of one forward pass (the model's).
    let maxRows: Int
    private(set) var waiting: [EngineSequence] = []
    private(set) var running: [EngineSequence] = []
    private(set) var finished: [EngineSequence] = []
    private(set) var counters = Counters()
    private let layout: BatchLayout
    private var rowTokens: [Int32]
    private var rowSeq: [EngineSequence] = []

    /// Most logit rows of one forward pass (the model's).
    let maxLogitRows: Int
    init(kv: PagedKVCache, swap: SwapSpace?, maxBatch: Int, prefillChunk: Int, maxRows: Int, maxLogitRows: Int = .max) {
        self.kv = kv; self.swap = swap; self.maxBatch = maxBatch; self.prefillChunk = prefillChunk; self.maxRows = maxRows
        self.maxLogitRows = maxLogitRows
        layout = BatchLayout(capacity: maxBatch + 8)
        rowTokens = [Int32](repeating: 0, count: maxRows)
    }

    var hasWork: Bool { !waiting.isEmpty || !running.isEmpty }

    /// Queues a sequence to be admitted (after those waiting).
    func enqueue(_ s: EngineSequence) { waiting.append(s) }

    /// A sequence whose KV is already in the cache (a forked sample) runs from the next step.
    func startRunning(_ s: EngineSequence) { running.append(s) }

    /// Ends every sequence of request `id` as `.cancelled`: out of the queues, blocks and swap
    /// slots freed.
    func cancel(request id: Int) {
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

    /// A running sequence is done (`reason`): its blocks are freed, it joins the finished.
    func retire(_ s: EngineSequence, _ reason: StopReason) {
        s.stop = reason
        if kv.contains(s.id) { kv.free(s.id) }
        running.removeAll { $0 === s }
        finished.append(s)
    }

    /// The finished sequences of request `id`, taken out.
    func takeFinished(request id: Int) -> [EngineSequence] {
        let seqs = finished.filter { $0.request == id }
        finished.removeAll { $0.request == id }
        return seqs
    }

    private func preempt(_ s: EngineSequence) {
        s.preemptions += 1
        counters.preemptions += 1
        running.removeAll { $0 === s }
        if let swap, s.computed > 0, s.prefillDone {
            // the disk tier: write the blocks out, read them back on re-admission
            do {
                let n = kv.blockTable(of: s.id).count
                s.swapped = try kv.swapOut(s.id, to: swap)
                counters.blocksSwappedOut += n
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

    /// The scheduler's half of a step (vLLM's `schedule()`): which rows run now, with which
    /// blocks reserved for them; preempts when blocks run out. Throws when nothing can be
    /// scheduled even after preempting (a lone sequence the pool cannot hold).
    func schedule() throws -> ScheduledStep {
        while true {
            layout.removeAll()
            rowSeq.removeAll(keepingCapacity: true)
            var swappedIn = false
            var budget = maxRows
            var logitBudget = maxLogitRows
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
                logitBudget -= 1
                i += 1
            }
            // 2. prompt chunks of running sequences, then admit waiting ones
            func addChunk(_ s: EngineSequence) throws -> Bool {
                // a prompt whose log-probabilities are asked for returns logits for every row
                let all = s.wantsPromptLogits
                let n = min(s.tokens.count - s.computed, prefillChunk, budget, all ? logitBudget : .max)
                if n <= 0 { return false }
                try kv.reserve(s.id, newTokens: n)
                for j in 0..<n { rowTokens[layout.totalRows + j] = s.tokens[s.computed + j] }
                let completes = s.computed + n == s.tokens.count
                if completes && logitBudget < 1 { return false }
                layout.append(sequence: s.id, rows: n, startPosition: s.computed, logits: all ? .all : completes ? .last : .none)
                logitBudget -= all ? n : completes ? 1 : 0
                rowSeq.append(s)
                budget -= n
                return true
            }
            for s in running where !s.prefillDone && budget > 0 {
                if (try? addChunk(s)) != true { break }
            }
            while budget > 0, running.count < maxBatch, let w = waiting.first {
                if let sw = w.swapped, let swap {
                    // swapped out: back in when its blocks (and one to grow) fit
                    if sw.slots.count + 1 > kv.pool.available && !running.isEmpty { break }
                    do {
                        try kv.swapIn(w.id, from: sw, swap: swap)
                    } catch {
                        if running.isEmpty { throw error }
                        break
                    }
                    counters.blocksSwappedIn += sw.slots.count
                    w.swapped = nil
                    waiting.removeFirst()
                    running.append(w)
                    swappedIn = true
                    continue
                }
                // a prompt whose log-probabilities are asked for is computed, not reused
                let reused = kv.startSequence(w.id, prompt: w.wantsPromptLogits ? [] : w.tokens)
                w.computed = reused
                if w.preemptions == 0 { w.cached = reused }
                counters.prefixHitTokens += reused
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
            let decodeOnly = layout.entries.allSatisfy { $0.rowCount == 1 } && rowSeq.allSatisfy { !$0.generated.isEmpty && $0.prefillDone }
            return ScheduledStep(layout: layout, sequences: rowSeq, tokens: rowTokens[0..<layout.totalRows], decodeOnly: decodeOnly)
        }
    }
}
