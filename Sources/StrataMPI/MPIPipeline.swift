import Foundation
import Strata
import StrataMemory
import StrataModels
import StrataPlanner
import StrataTensor

/// Pipeline stages over the ranks of an MPI job (`Pipeline`): rank r holds a contiguous range of
/// layers, split in proportion to the ranks' RAM budgets (`splitLayers`). Rank 0 runs the API and
/// the scheduler; each pass of its model (`PipelineModel`) runs rank 0's layers, sends the
/// residual stream of the rows to rank 1, which runs its layers and sends on, and the last rank
/// sends the logits back to rank 0. A pass of many rows goes as several micro-batches, so the
/// ranks work on different micro-batches at once. Every later rank follows rank 0's KV block
/// tables (`PagedKVCache.mirror`) and copies-on-write (`copyBlock`).
///
/// Messages (bytes; 8-byte integers, then f32 values): along the chain, tag 1:
/// `[kind, 0, entries, rows, flags, kvKind, cacheID, capacity, kvType, copies]`, then per entry
/// `[sequence, rowStart, rowCount, startPosition, logits]`, per copy `[from, to]`, for a paged
/// cache per entry `[blocks, ids...]`, then `rows * hidden` values. Kinds: 1 a pass, 2 a
/// contiguous cache released, 3 shutdown, 4 an error on the way (then its text). From the last
/// rank to rank 0, tag 2: `[1, count]` and the values, or `[4, length]` and the error's text.
/// Setup, rank 0 to every rank, tag 3 (`StageSetup`).
public final class MPIPipeline: Pipeline, @unchecked Sendable {
    public let world: MPIWorld
    public var rank: Int { world.rank }
    public var size: Int { world.size }
    /// This rank's RAM budget (nil: none), its share of the layers' weight.
    let budget: Int?
    /// Whether a mixture's routed experts are spread over all ranks (else each stage holds its layers').
    public let shardExperts: Bool
    private var split: [Range<Int>]?
    private var weights: [Double] = []
    private var shards: MPIExpertShards?

    static let chainTag: Int32 = 1, resultTag: Int32 = 2, setupTag: Int32 = 3

    public init(world: MPIWorld, budget: Int?, shardExperts: Bool = true) {
        self.world = world
        self.budget = budget
        self.shardExperts = shardExperts
    }

    /// Whether `inventory`'s experts are spread over the ranks: a mixture whose experts are
    /// addressed one by one (not gpt-oss's hub layout, whose experts are their layers' tensors).
    func shards(_ inventory: WeightInventory) -> Bool { shardExperts && !inventory.experts.isEmpty }

    public func expertShards(_ inventory: WeightInventory) throws -> ExpertShards? {
        guard shards(inventory) else { return nil }
        if let shards { return shards }
        _ = try layers(inventory)
        let n = inventory.experts.map(\.count).max() ?? 0
        guard n >= size else { throw PipelineError.notSupported("\(size) ranks for \(n) experts a layer: each rank needs an expert") }
        let s = MPIExpertShards(world: world, ranges: splitLayers([Int](repeating: 1, count: n), weights: weights))
        world.idle = { [weak s] in try s?.serveOne() ?? false }
        shards = s
        return s
    }

    /// Each rank's RAM budget (without one, the RAM its host had available), as the split used them.
    public var budgets: [Double] { weights }
    /// The link from each rank to the next (the last: to rank 0), measured at start: one-way
    /// latency (half the round trip of 8 bytes, best of 20) and bandwidth (4 MiB each way, best of 4).
    public private(set) var links: [(bytesPerSecond: Double, latencySeconds: Double)] = []

    /// Rank 0: each rank's hardware profile as cached on its host (`strata profile`; nil where a
    /// rank has none), for the cluster planner's prediction of this run.
    public private(set) var profiles: [HardwareProfile?] = []

    private func gatherProfiles() throws {
        let enc = JSONEncoder()
        if rank > 0 {
            let bytes = [UInt8]((try? Profiler.cached().map { try enc.encode($0) } ?? Data()) ?? Data())
            try bytes.withUnsafeBytes { b in try world.send(b.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: b.count, to: 0, tag: 9) }
            return
        }
        profiles = [Profiler.cached()]
        var buf: [UInt8] = []
        for r in 1..<size {
            let n = try world.receive(from: r, tag: 9, into: &buf)
            profiles.append(n == 0 ? nil : try? JSONDecoder().decode(HardwareProfile.self, from: Data(buf[0..<n])))
        }
    }

    private func measureLinks() throws {
        var buf: [UInt8] = []
        let small = [UInt8](repeating: 1, count: 8), big = [UInt8](repeating: 2, count: 4 << 20)
        var myLatency = 0.0, myBandwidth = 0.0
        for s in 0..<size {
            let next = (s + 1) % size
            if rank == s {
                var best = Double.infinity
                for _ in 0..<20 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try small.withUnsafeBytes { try world.send($0.baseAddress!, count: 8, to: next, tag: 7) }
                    _ = try world.receive(from: next, tag: 7, into: &buf)
                    best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 2e9)
                }
                var bestBig = Double.infinity
                for _ in 0..<4 {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try big.withUnsafeBytes { try world.send($0.baseAddress!, count: $0.count, to: next, tag: 8) }
                    _ = try world.receive(from: next, tag: 8, into: &buf)
                    bestBig = min(bestBig, Double(DispatchTime.now().uptimeNanoseconds - t0) / 2e9)
                }
                myLatency = best
                myBandwidth = Double(big.count) / max(1e-9, bestBig - best)
            } else if rank == next {
                for _ in 0..<20 {
                    _ = try world.receive(from: s, tag: 7, into: &buf)
                    try small.withUnsafeBytes { try world.send($0.baseAddress!, count: 8, to: s, tag: 7) }
                }
                for _ in 0..<4 {
                    _ = try world.receive(from: s, tag: 8, into: &buf)
                    try big.withUnsafeBytes { try world.send($0.baseAddress!, count: $0.count, to: s, tag: 8) }
                }
            }
        }
        let lat = try world.allGather(myLatency), bw = try world.allGather(myBandwidth)
        links = (0..<size).map { (bw[$0], lat[$0]) }
    }

    /// Each rank's experts (with expert shards).
    public var expertRanges: [Range<Int>] { shards?.ranges ?? [] }

    /// Each rank's layers (all ranks compute the same split from every rank's budget; without
    /// one, from the RAM the host has available).
    public func layers(_ inventory: WeightInventory) throws -> Range<Int> {
        if let split { return split[rank] }
        guard inventory.layerBytes.count >= size else {
            throw PipelineError.notSupported("\(size) ranks for a model of \(inventory.layerBytes.count) layers: each rank needs a layer")
        }
        let mine = Double(budget ?? MemoryInfo.availableBytes())
        weights = try world.allGather(max(1, mine))
        try measureLinks()
        try gatherProfiles()
        // with expert shards the experts spread over every rank: the stages split the rest
        let s = splitLayers(shards(inventory) ? inventory.denseLayerBytes.map { max(1, $0) } : inventory.layerBytes, weights: weights)
        split = s
        return s[rank]
    }

    /// All ranks' layer ranges (after `layers`).
    public var stages: [Range<Int>] { split ?? [] }

    public func agree(_ setup: StageSetup?) throws -> StageSetup {
        if let setup {
            precondition(rank == 0, "MPIPipeline.agree: only rank 0 sets up")
            let ints = [setup.kvBlocks, setup.blockSize, DType.kvTypes.firstIndex(of: setup.kvType) ?? 0, setup.workload.batch,
                        setup.workload.promptTokens, setup.workload.outputTokens, setup.weights == .mmap ? 1 : 0, setup.prefetchDepth]
            for r in 1..<size {
                try ints.withUnsafeBytes { b in try world.send(b.baseAddress!, count: b.count, to: r, tag: Self.setupTag) }
            }
            return setup
        }
        var buf: [UInt8] = []
        let n = try world.receive(from: 0, tag: Self.setupTag, into: &buf)
        guard n == 8 * 8 else { throw PipelineError.notSupported("\(world.name(rank)): a setup message of \(n) bytes from rank 0") }
        let v = buf.withUnsafeBytes { b in (0..<8).map { b.loadUnaligned(fromByteOffset: 8 * $0, as: Int.self) } }
        return StageSetup(kvBlocks: v[0], blockSize: v[1], kvType: DType.kvTypes[min(max(0, v[2]), DType.kvTypes.count - 1)],
                          workload: Workload(batch: v[3], promptTokens: v[4], outputTokens: v[5]), weights: v[6] == 1 ? .mmap : .tiered,
                          prefetchDepth: v[7])
    }

    public func wrap(_ model: CausalLM, layers: Range<Int>) throws -> CausalLM {
        if let shards {
            guard let serving = model as? ExpertServing else { throw PipelineError.notSupported("this architecture cannot serve its experts to other ranks") }
            shards.model = serving
            serving.prepareExpertService()
        }
        // every rank has loaded its weights before rank 0 runs a pass (a pass's time is then its
        // own, not the wait for the slowest rank's load)
        _ = try world.allGather(0)
        return rank == 0 ? PipelineModel(inner: model, layers: layers, pipeline: self) : StageModel(inner: model, layers: layers)
    }

    /// Rank 0, at the end: tells the other ranks to stop (they return from `serveStage`).
    public func shutdown() throws {
        var w = MessageWriter()
        w.header(kind: .shutdown)
        try w.bytes.withUnsafeBytes { b in try world.send(b.baseAddress!, count: b.count, to: 1, tag: Self.chainTag) }
    }

    /// Ranks after 0: runs this rank's layers of every pass rank 0 sends until it says stop.
    /// `model` is the stage's model (`wrap`'s), `paged` the KV pool built for its layers.
    public func serveStage(model: CausalLM, paged: PagedKVCache, layers: Range<Int>) throws {
        let last = rank == size - 1
        let spec = model.spec
        var input: [UInt8] = []
        var outs = [MessageWriter(), MessageWriter()]
        var pending = [world.nullRequest, world.nullRequest]
        var turn = 0
        let layout = BatchLayout(capacity: 64)
        let tokens = [Int32](repeating: 0, count: model.maxRows)  // a later stage never reads the ids
        var caches: [Int: KVCache] = [:]
        var seen = Set<Int>(), passes = 0
        defer { for i in 0..<2 { try? world.wait(&pending[i], peer: rank + 1) } }
        func send(_ w: inout MessageWriter, slot: Int) throws {
            let peer = last ? 0 : rank + 1
            try world.wait(&pending[slot], peer: peer)
            pending[slot] = try w.bytes.withUnsafeBytes { b in
                try world.startSend(b.baseAddress!, count: b.count, to: peer, tag: last ? Self.resultTag : Self.chainTag)
            }
        }
        while true {
            let n = try world.receive(from: rank - 1, tag: Self.chainTag, into: &input)
            let slot = turn; turn ^= 1
            try world.wait(&pending[slot], peer: last ? 0 : rank + 1)
            let kind = input.withUnsafeBytes { Kind(rawValue: $0.loadUnaligned(as: Int.self)) }
            switch kind {
            case .shutdown?, .release?, .error?:
                if kind == .release { caches[input.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: Int.self) }] = nil }
                if kind == .error && last {
                    outs[slot].reset()
                    outs[slot].bytes.append(contentsOf: input[0..<n])
                    try send(&outs[slot], slot: slot)
                } else if !last {
                    outs[slot].reset()
                    outs[slot].bytes.append(contentsOf: input[0..<n])
                    try send(&outs[slot], slot: slot)
                }
                if kind == .shutdown { return }
            case .pass?:
                do {
                    let result = try input.withUnsafeBytes { raw -> (UnsafeBufferPointer<Float>, Int) in
                        var r = MessageReader(raw)
                        let h = try r.passHeader(spec: spec, maxRows: model.maxRows)
                        layout.removeAll()
                        layout.hiddenStates = h.hiddenStates
                        for _ in 0..<h.entries {
                            let e = try r.entry(rows: h.rows)
                            layout.append(sequence: e.sequence, rows: e.rowCount, startPosition: e.startPosition, logits: e.logits)
                        }
                        let kv: KVStorage
                        if h.kvKind == 1 {
                            for _ in 0..<h.copies {
                                let from = r.int(), to = r.int()
                                guard from >= 0, from < paged.pool.blockCount, to >= 0, to < paged.pool.blockCount else {
                                    throw PipelineError.notSupported("block copy \(from) -> \(to) outside the pool of \(paged.pool.blockCount)")
                                }
                                paged.copyBlock(from: from, to: to)
                            }
                            for e in layout.entries {
                                let count = r.int()
                                let ids = r.ints(count)
                                guard count * paged.blockSize >= e.endPosition, ids.allSatisfy({ $0 >= 0 && $0 < paged.pool.blockCount }) else {
                                    throw PipelineError.notSupported("sequence \(e.sequence): a block table of \(count) blocks for \(e.endPosition) positions")
                                }
                                paged.mirror(e.sequence, table: ids)
                                seen.insert(e.sequence)
                            }
                            passes += 1
                            if passes % 256 == 0 { paged.dropMirrors(keeping: seen); seen.removeAll(keepingCapacity: true) }
                            kv = paged
                        } else {
                            if let c = caches[h.cacheID] {
                                kv = c
                            } else {
                                guard h.capacity > 0, h.capacity <= spec.maxPositions else { throw PipelineError.notSupported("a cache of \(h.capacity) positions") }
                                let c = KVCache(layers: spec.layers, capacity: h.capacity, kvDim: spec.kvDim, headDim: spec.headDim, type: h.kvType,
                                                stored: layers)
                                caches[h.cacheID] = c
                                kv = c
                            }
                        }
                        guard r.left >= 4 * h.rows * spec.hiddenSize else {
                            throw PipelineError.notSupported("a pass message whose \(h.rows) rows' values are cut short (\(r.left) bytes left)")
                        }
                        layout.stageLayers = layers
                        layout.stageInput = r.floats(h.rows * spec.hiddenSize)
                        let out = try tokens.withUnsafeBufferPointer { t in
                            try model.forward(UnsafeBufferPointer(rebasing: t[0..<h.rows]), layout: layout, kv: kv)
                        }
                        return (out, r.offset - h.rows * spec.hiddenSize * 4)
                    }
                    layout.stageInput = nil
                    outs[slot].reset()
                    if last {
                        outs[slot].ints([Kind.pass.rawValue, result.0.count])
                    } else {
                        outs[slot].bytes.append(contentsOf: input[0..<result.1])  // the header, entries, copies and tables as they came
                    }
                    outs[slot].floats(result.0)
                    try send(&outs[slot], slot: slot)
                } catch {
                    layout.stageInput = nil
                    outs[slot].reset()
                    outs[slot].error("\(world.name(rank)): \(error)")
                    try send(&outs[slot], slot: slot)
                }
            case nil:
                throw PipelineError.notSupported("\(world.name(rank)): an unknown message from rank \(rank - 1)")
            }
        }
    }
}

enum Kind: Int { case pass = 1, release = 2, shutdown = 3, error = 4 }

/// A message being written: integers then f32 values (capacity kept across messages).
struct MessageWriter {
    var bytes: [UInt8] = []
    mutating func reset() { bytes.removeAll(keepingCapacity: true) }
    mutating func int(_ v: Int) { withUnsafeBytes(of: v) { bytes.append(contentsOf: $0) } }
    mutating func ints(_ vs: [Int]) { for v in vs { int(v) } }
    mutating func floats(_ p: UnsafeBufferPointer<Float>) { bytes.append(contentsOf: UnsafeRawBufferPointer(p)) }
    mutating func header(kind: Kind, id: Int = 0) { int(kind.rawValue); int(id) }
    mutating func error(_ text: String) {
        let u = Array(text.utf8)
        int(Kind.error.rawValue); int(u.count)
        bytes.append(contentsOf: u)
    }
}

/// Reads a message; every count it takes from the message is checked against the bytes there.
struct MessageReader {
    let raw: UnsafeRawBufferPointer
    var offset = 0
    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }
    var left: Int { raw.count - offset }
    mutating func int() -> Int {
        guard left >= 8 else { offset = raw.count; return -1 }
        defer { offset += 8 }
        return raw.loadUnaligned(fromByteOffset: offset, as: Int.self)
    }
    /// `n` integers as a view (empty if the message is short).
    mutating func ints(_ n: Int) -> UnsafeBufferPointer<Int> {
        guard n >= 0, left >= 8 * n, (raw.baseAddress! + offset).alignedUp(for: Int.self) == raw.baseAddress! + offset else {
            offset = raw.count; return UnsafeBufferPointer(start: nil, count: 0)
        }
        defer { offset += 8 * n }
        return UnsafeBufferPointer(start: (raw.baseAddress! + offset).assumingMemoryBound(to: Int.self), count: n)
    }
    mutating func floats(_ n: Int) -> UnsafePointer<Float> {
        defer { offset += 4 * n }
        return (raw.baseAddress! + offset).assumingMemoryBound(to: Float.self)
    }

    struct PassHeader {
        var entries: Int, rows: Int, hiddenStates: Bool, kvKind: Int, cacheID: Int, capacity: Int, kvType: DType, copies: Int
    }

    /// A pass's header, checked: the counts fit the model and the message's bytes.
    mutating func passHeader(spec: ModelSpec, maxRows: Int) throws -> PassHeader {
        _ = int(); _ = int()
        let entries = int(), rows = int(), flags = int(), kvKind = int(), cacheID = int(), capacity = int(), type = int(), copies = int()
        guard entries >= 1, entries <= rows, rows >= 1, rows <= maxRows, kvKind == 1 || kvKind == 2, type >= 0, type < DType.kvTypes.count,
              copies >= 0, left >= 8 * (5 * entries + 2 * copies) else {
            throw PipelineError.notSupported("a malformed pass message (\(entries) entries, \(rows) rows, \(raw.count) bytes)")
        }
        return PassHeader(entries: entries, rows: rows, hiddenStates: flags & 1 != 0, kvKind: kvKind, cacheID: cacheID, capacity: capacity,
                          kvType: DType.kvTypes[type], copies: copies)
    }

    mutating func entry(rows: Int) throws -> BatchLayout.Entry {
        let seq = int(), start = int(), count = int(), pos = int(), logits = int()
        guard start >= 0, count >= 1, start + count <= rows, pos >= 0, (0...2).contains(logits) else {
            throw PipelineError.notSupported("a malformed entry (rows \(start)..<\(start + count) of \(rows), position \(pos))")
        }
        return BatchLayout.Entry(sequence: seq, rowStart: start, rowCount: count, startPosition: pos,
                                 logits: logits == 0 ? .none : logits == 1 ? .last : .all)
    }
}

/// A later stage's model: its layers, and K/V for those only.
final class StageModel: CausalLM, @unchecked Sendable {
    let inner: CausalLM
    let layers: Range<Int>
    init(inner: CausalLM, layers: Range<Int>) { self.inner = inner; self.layers = layers }
    var spec: ModelSpec { inner.spec }
    var maxRows: Int { inner.maxRows }
    var workspaceBytes: Int { inner.workspaceBytes }
    var kvLayers: Range<Int> { layers }
    func forward(_ tokens: UnsafeBufferPointer<Int32>, layout: BatchLayout, kv: KVStorage) throws -> UnsafeBufferPointer<Float> {
        try inner.forward(tokens, layout: layout, kv: kv)
    }
}
