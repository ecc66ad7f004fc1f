import Foundation
import Strata
import StrataModels
import StrataPlanner
import StrataTensor

/// A mixture's routed experts spread over the ranks (`ExpertShards`): rank r holds the same
/// contiguous range of every layer's experts (ranges in proportion to the ranks' RAM budgets).
/// A layer of experts sends each other rank one message with the rows routed to its experts
/// (tag 5: `[layer, experts, rows, (expert, count)...]`, then the rows) and takes back their
/// outputs (tag 6: the output rows in the same order). Requests are answered wherever a rank
/// waits (`MPIWorld.idle`): in its own layer of experts, for the next rank's message, or for
/// a pass's logits.
final class MPIExpertShards: ExpertShards, @unchecked Sendable {
    let world: MPIWorld
    /// Each rank's experts (the same range in every layer).
    let ranges: [Range<Int>]
    /// The model that runs this rank's experts for the others (set when it is built).
    weak var model: ExpertServing?
    private var outgoing: [MessageWriter]
    private var sending: [MPIWorld.Request]
    private var request: [UInt8] = []
    private var replies: [(writer: MessageWriter, pending: MPIWorld.Request)] = []
    static let requestTag: Int32 = 5, replyTag: Int32 = 6

    var rank: Int { world.rank }
    var ranks: Int { world.size }

    init(world: MPIWorld, ranges: [Range<Int>]) {
        self.world = world
        self.ranges = ranges
        outgoing = (0..<world.size).map { _ in MessageWriter() }
        sending = (0..<world.size).map { _ in world.nullRequest }
    }

    func experts(of rank: Int, layer: Int) -> Range<Int> { ranges[rank] }

    func send(layer: Int, to q: Int, experts: UnsafeBufferPointer<Int32>, counts: UnsafeBufferPointer<Int32>,
              rowIDs: UnsafeBufferPointer<Int32>, xn: UnsafePointer<Float>, hidden: Int) throws {
        try world.wait(&sending[q], peer: q)
        var w = MessageWriter()
        swap(&w, &outgoing[q])
        defer { swap(&w, &outgoing[q]) }
        w.reset()
        w.ints([layer, experts.count, rowIDs.count])
        for (i, e) in experts.enumerated() { w.int(Int(e)); w.int(Int(counts[i])) }
        for r in rowIDs { w.floats(UnsafeBufferPointer(start: xn + Int(r) * hidden, count: hidden)) }
        sending[q] = try w.bytes.withUnsafeBytes { b in try world.startSend(b.baseAddress!, count: b.count, to: q, tag: Self.requestTag) }
    }

    func receive(layer: Int, from q: Int, into out: UnsafeMutablePointer<Float>, rows: Int, hidden: Int) throws {
        var buf: [UInt8] = []
        swap(&buf, &reply)
        defer { swap(&buf, &reply) }
        let n = try world.receive(from: q, tag: Self.replyTag, into: &buf)
        if n >= 16, buf.withUnsafeBytes({ $0.loadUnaligned(as: Int.self) }) == Kind.error.rawValue {
            let len = buf.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: Int.self) }
            throw PipelineError.stageFailed(String(decoding: buf[16..<min(n, 16 + max(0, len))], as: UTF8.self))
        }
        guard n == rows * hidden * 4 else {
            throw PipelineError.notSupported("rank \(q) answered layer \(layer)'s experts with \(n) bytes for \(rows) rows")
        }
        buf.withUnsafeBytes { b in out.update(from: b.baseAddress!.assumingMemoryBound(to: Float.self), count: rows * hidden) }
    }
    private var reply: [UInt8] = []
    /// a request's experts and their row counts (capacity kept across requests)
    private var ids: [Int32] = [], counts: [Int32] = []

    /// Answers one waiting request, if any (`MPIWorld.idle`): runs the experts it names over its
    /// rows and sends the outputs back (a failure goes back as an error naming this rank).
    func serveOne() throws -> Bool {
        guard let (source, _) = try world.probe(tag: Self.requestTag) else { return false }
        let n = try world.receive(from: source, tag: Self.requestTag, into: &request)
        // a free reply buffer (its last send done), else a new one
        var slot = -1
        for i in replies.indices where try world.test(&replies[i].pending, peer: source) { slot = i; break }
        if slot < 0 { replies.append((MessageWriter(), world.nullRequest)); slot = replies.count - 1 }
        var w = MessageWriter()
        swap(&w, &replies[slot].writer)
        defer { swap(&w, &replies[slot].writer) }
        w.reset()
        do {
            try request.withUnsafeBytes { raw in
                var r = MessageReader(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                let layer = r.int(), count = r.int(), rows = r.int()
                guard let model else { throw PipelineError.notSupported("no model to run experts") }
                let hidden = (n - 24 - 16 * max(0, count)) / max(1, 4 * max(1, rows))
                guard count >= 1, count <= ranges[rank].count, rows >= 1, n == 24 + 16 * count + 4 * rows * hidden,
                      hidden == (model as? CausalLM)?.spec.hiddenSize else {
                    throw PipelineError.notSupported("a malformed expert request from rank \(source) (\(n) bytes)")
                }
                let pairs = r.ints(2 * count)
                ids.removeAll(keepingCapacity: true); counts.removeAll(keepingCapacity: true)
                var total = 0
                for i in 0..<count {
                    let e = pairs[2 * i], c = pairs[2 * i + 1]
                    guard ranges[rank].contains(e), c >= 1 else {
                        throw PipelineError.notSupported("rank \(source) asked for expert \(e) of layer \(layer), which rank \(rank) does not hold")
                    }
                    ids.append(Int32(e)); counts.append(Int32(c)); total += c
                }
                guard total == rows else { throw PipelineError.notSupported("an expert request of \(rows) rows whose experts take \(total)") }
                let input = r.floats(rows * hidden)
                if w.bytes.count < 4 * rows * hidden { w.bytes.reserveCapacity(4 * rows * hidden) }
                w.bytes.append(contentsOf: repeatElement(0, count: 4 * rows * hidden))
                try w.bytes.withUnsafeMutableBytes { out in
                    try ids.withUnsafeBufferPointer { i in
                        try counts.withUnsafeBufferPointer { c in
                            try model.serveExperts(layer: layer, experts: i, counts: c, rows: input, out: out.baseAddress!.assumingMemoryBound(to: Float.self))
                        }
                    }
                }
            }
        } catch {
            w.reset()
            w.error("\(world.name(rank)): \(error)")
        }
        replies[slot].pending = try w.bytes.withUnsafeBytes { b in try world.startSend(b.baseAddress!, count: b.count, to: source, tag: Self.replyTag) }
        return true
    }
}
