import Dispatch
import Foundation
import StrataTensor

/// Where one routed expert's three matrices lie in the files.
public struct ExpertLocation: Sendable {
    public struct Part: Sendable {
        public var path: String
        /// absolute byte range in the file
        public var begin: Int, end: Int
        public var dtype: DType
        /// `[rows, cols]`
        public var shape: [Int]
        public init(path: String, begin: Int, end: Int, dtype: DType, shape: [Int]) {
            self.path = path; self.begin = begin; self.end = end; self.dtype = dtype; self.shape = shape
        }
        var bytes: Int { end - begin }
    }
    public var layer: Int, expert: Int
    /// gate, up, down
    public var parts: [Part]
    public init(layer: Int, expert: Int, parts: [Part]) { self.layer = layer; self.expert = expert; self.parts = parts }
    public var bytes: Int { parts.reduce(0) { $0 + $1.bytes } }
}

/// Counters of an expert cache.
public struct ExpertCacheStats: Sendable, Codable, Equatable {
    /// the eviction policy (`ExpertCache.Policy`)
    public var policy = ""
    public var hits = 0
    public var misses = 0
    public var bytesRead = 0
    public var readSeconds = 0.0
    /// per layer (of the model): hits and misses
    public var layerHits: [Int] = []
    public var layerMisses: [Int] = []
    /// Per layer: the entropy of the experts routed to (each pin one use), over log2(experts):
    /// 1 is uniform routing (a cache's worst case), lower is routing that reuses experts.
    public var layerRoutingEntropy: [Double] = []
    public var hitRate: Double { hits + misses > 0 ? Double(hits) / Double(hits + misses) : 0 }
    /// Per layer: hits / (hits + misses), 0 for a layer with no experts.
    public var layerHitRates: [Double] {
        zip(layerHits, layerMisses).map { $0 + $1 > 0 ? Double($0) / Double($0 + $1) : 0 }
    }
    /// The mean of the layers' routing entropies (layers with experts).
    public var routingEntropy: Double {
        let e = layerRoutingEntropy.filter { $0 > 0 }
        return e.isEmpty ? 0 : e.reduce(0, +) / Double(e.count)
    }
    enum CodingKeys: String, CodingKey {
        case policy, hits, misses, bytesRead = "bytes_read", readSeconds = "read_seconds", layerHits = "layer_hits", layerMisses = "layer_misses"
        case layerRoutingEntropy = "layer_routing_entropy"
    }
    public init() {}
}

/// The slots a mixture's routed experts are read into, one expert per slot, when the experts do
/// not all fit in RAM: a pinned expert stays, the least recently used unpinned one is evicted for
/// a miss (LRU), and the misses of one `pin` are read concurrently (the disk needs reads in
/// flight), through O_DIRECT where the file system allows so that no page cache grows beside the
/// budget. Each slot is charged to the ledger's `expertCache` line.
public final class ExpertCache: ExpertSource, @unchecked Sendable {
    /// Which unpinned slot a miss takes.
    public enum Policy: String, CaseIterable, Sendable {
        /// the least recently used
        case lru
        /// the least often used so far (ties: the least recently used)
        case lfu
        /// segmented LRU: an expert hit again moves to a protected segment (at most 80% of the
        /// slots); misses evict the least recently used of the probationary segment first
        case slru
        /// `STRATA_EXPERT_POLICY` (lru, lfu, slru), else the choice for the cache's size: LRU when
        /// the slots hold two tokens' experts (`workingSet`: k experts of every sparse layer), LFU
        /// when they do not (a pass visits the layers in a cycle, and an LRU smaller than the
        /// cycle evicts each expert just before it is needed again: measured 0% hits on a
        /// Mixtral-8x7B shape with 55 slots, 41% with LFU; docs/benchmarks.md)
        public static func chosen(slots: Int, workingSet: Int) -> Policy {
            if let p = ProcessInfo.processInfo.environment["STRATA_EXPERT_POLICY"].flatMap(Policy.init(rawValue:)) { return p }
            return expertCacheUsesLRU(slots: slots, workingSet: workingSet) ? .lru : .lfu
        }
    }
    public let policy: Policy
    public let slotCount: Int
    public let slotBytes: Int
    let ledger: Ledger
    private let experts: [[ExpertLocation]]
    private let expertsPerLayer: Int
    /// offset of part p in a slot; room for the largest part p plus alignment
    private let partOffset: [Int]
    private let slots: [TensorStorage]
    /// expert key (layer * expertsPerLayer + expert) -> slot, or -1
    private var slotOf: [Int32]
    /// slot -> expert key, or -1
    private var keyOf: [Int]
    private var pins: [Int]
    private var lastUse: [UInt64]
    /// SLRU: whether a slot is in the protected segment, and how many are
    private var protected: [Bool]
    private var protectedCount = 0
    private var tick: UInt64 = 0
    /// per slot and layer: the views (made once; a layer's parts have one dtype and shape each)
    private var views: [[ExpertWeights?]]
    private var viewShifts: [[Shifts]]
    private var files: [String: (fd: Int32, direct: Bool, size: Int)] = [:]
    private let io = DispatchQueue(label: "strata-expert-io", attributes: .concurrent)
    private var counters = ExpertCacheStats()
    private let lock = NSLock()
    private var missing: [(slot: Int, location: ExpertLocation)] = []
    /// per slot: its bytes are in RAM (false while its read runs), and the read's error
    private var arrived: [Bool]
    /// parts of each slot's expert still being read
    private var partsLeft: [Int]
    private var failed: [Error?]
    /// the slots of the last pin, in its order
    private var pinnedSlots: [Int] = []
    /// reads in flight, and when the first of them started (the read time counted is the time
    /// any read is in flight)
    private var inFlight = 0
    private var flightStart: UInt64 = 0
    private let arrival = NSCondition()
    /// per expert key: times it was routed to (pinned)
    private var uses: [Int]
    public var stats: ExpertCacheStats {
        lock.lock(); defer { lock.unlock() }
        var s = counters
        s.policy = policy.rawValue
        s.layerRoutingEntropy = (0..<experts.count).map { l in
            let n = experts[l].count
            let counts = uses[(l * expertsPerLayer)..<(l * expertsPerLayer + n)]
            let total = Double(counts.reduce(0, +))
            guard n > 1, total > 0 else { return 0 }
            let h = counts.reduce(0.0) { acc, c in c == 0 ? acc : acc - Double(c) / total * log2(Double(c) / total) }
            return h / log2(Double(n))
        }
        return s
    }

    static let align = 4096

    /// Bytes of one slot for these experts (room for the largest of each matrix, aligned for
    /// O_DIRECT reads), as the cache allocates it: what a placement counts per slot.
    public static func slotBytes(_ experts: [[ExpertLocation]]) -> Int { layout(experts).bytes }

    private static func layout(_ experts: [[ExpertLocation]]) -> (offsets: [Int], bytes: Int) {
        var largest = [0, 0, 0]
        for layer in experts { for e in layer { for (p, part) in e.parts.enumerated() { largest[p] = max(largest[p], part.bytes) } } }
        var offsets: [Int] = [], at = 0
        for p in 0..<3 {
            offsets.append(at)
            at += (largest[p] + 2 * align) / align * align
        }
        return (offsets, at)
    }

    /// `experts[layer]`: every expert of each layer with experts (an empty list for a dense layer).
    public init(experts: [[ExpertLocation]], slots: Int, ledger: Ledger, policy: Policy = .lru) throws {
        precondition(slots >= 1, "ExpertCache: no slot")
        self.policy = policy
        self.experts = experts
        self.ledger = ledger
        expertsPerLayer = experts.map(\.count).max() ?? 0
        let (offsets, at) = Self.layout(experts)
        partOffset = offsets
        slotBytes = at
        slotCount = slots
        try ledger.charge(.expertCache, slots * slotBytes)
        self.slots = (0..<slots).map { _ in TensorStorage(byteCount: at, alignment: Self.align, hugePages: true) }
        slotOf = [Int32](repeating: -1, count: experts.count * expertsPerLayer)
        uses = [Int](repeating: 0, count: experts.count * expertsPerLayer)
        keyOf = [Int](repeating: -1, count: slots)
        pins = [Int](repeating: 0, count: slots)
        lastUse = [UInt64](repeating: 0, count: slots)
        protected = [Bool](repeating: false, count: slots)
        arrived = [Bool](repeating: true, count: slots)
        partsLeft = [Int](repeating: 0, count: slots)
        failed = [Error?](repeating: nil, count: slots)
        views = [[ExpertWeights?]](repeating: [ExpertWeights?](repeating: nil, count: experts.count), count: slots)
        viewShifts = [[Shifts]](repeating: [Shifts](repeating: Shifts(), count: experts.count), count: slots)
        counters.layerHits = [Int](repeating: 0, count: experts.count)
        counters.layerMisses = [Int](repeating: 0, count: experts.count)
        missing.reserveCapacity(slots)
    }

    deinit {
        for (_, f) in files { FileIO.closeFile(f.fd) }
        ledger.credit(.expertCache, slotCount * slotBytes)
    }

    public func pin(layer: Int, experts ids: ArraySlice<Int>, into weights: inout [ExpertWeights]) throws {
        precondition(ids.count <= slotCount, "ExpertCache: \(ids.count) experts pinned at once in \(slotCount) slots")
        weights.removeAll(keepingCapacity: true)
        missing.removeAll(keepingCapacity: true)
        pinnedSlots.removeAll(keepingCapacity: true)
        lock.lock()
        for e in ids {
            let key = layer * expertsPerLayer + e
            tick += 1
            uses[key] += 1
            var slot = Int(slotOf[key])
            if slot >= 0 {
                counters.hits += 1
                counters.layerHits[layer] += 1
                if policy == .slru && !protected[slot] { promote(slot) }
            } else {
                counters.misses += 1
                counters.layerMisses[layer] += 1
                let best = victim()
                guard best >= 0 else { lock.unlock(); preconditionFailure("ExpertCache: every slot pinned") }
                if keyOf[best] >= 0 { slotOf[keyOf[best]] = -1 }
                if protected[best] { protected[best] = false; protectedCount -= 1 }
                keyOf[best] = key
                slotOf[key] = Int32(best)
                slot = best
                missing.append((best, experts[layer][e]))
            }
            pins[slot] += 1
            lastUse[slot] = tick
            pinnedSlots.append(slot)
        }
        lock.unlock()
        if !missing.isEmpty {
            do {
                for m in missing { for p in m.location.parts where files[p.path] == nil { files[p.path] = try FileIO.openForLargeReads(p.path) } }
            } catch {
                lock.lock()
                for m in missing { slotOf[keyOf[m.slot]] = -1; keyOf[m.slot] = -1 }
                for s in pinnedSlots { pins[s] -= 1 }
                lock.unlock()
                throw error
            }
        }
        // the views after the files are open (where an O_DIRECT read leaves each part in its slot)
        for (s, e) in zip(pinnedSlots, ids) { weights.append(view(slot: s, layer: layer, expert: e)) }
        if !missing.isEmpty { start(missing) }
    }

    public func ready(_ index: Int) -> Bool {
        arrival.lock(); defer { arrival.unlock() }
        return arrived[pinnedSlots[index]]
    }

    public func wait(_ index: Int) throws {
        let s = pinnedSlots[index]
        arrival.lock()
        while !arrived[s] { arrival.wait() }
        let error = failed[s]
        arrival.unlock()
        if let error {
            // what failed to arrive is not cached
            lock.lock()
            if keyOf[s] >= 0 { slotOf[keyOf[s]] = -1; keyOf[s] = -1 }
            lock.unlock()
            throw error
        }
    }

    /// Starts one read per part of each missing expert (gate, up, down) on the concurrent I/O
    /// queue: a layer's misses keep three times as many reads in flight, and its last expert
    /// arrives sooner (one read per expert left the disk with one read in flight at each layer's end).
    private func start(_ list: [(slot: Int, location: ExpertLocation)]) {
        arrival.lock()
        if inFlight == 0 { flightStart = DispatchTime.now().uptimeNanoseconds }
        for m in list {
            arrived[m.slot] = false; failed[m.slot] = nil
            partsLeft[m.slot] = m.location.parts.count
            inFlight += m.location.parts.count
        }
        arrival.unlock()
        for m in list {
            for p in m.location.parts.indices {
                io.async { [self] in
                    var bytes = 0, error: Error? = nil
                    do { bytes = try readPart(m.slot, p, m.location.parts[p]) } catch let e { error = e }
                    arrival.lock()
                    partsLeft[m.slot] -= 1
                    if let error, failed[m.slot] == nil { failed[m.slot] = error }
                    if partsLeft[m.slot] == 0 { arrived[m.slot] = true }
                    inFlight -= 1
                    let now = DispatchTime.now().uptimeNanoseconds
                    let span = inFlight == 0 ? Double(now - flightStart) / 1e9 : 0
                    if inFlight == 0 || partsLeft[m.slot] == 0 { arrival.broadcast() }
                    arrival.unlock()
                    lock.lock()
                    counters.bytesRead += bytes
                    counters.readSeconds += span
                    lock.unlock()
                }
            }
        }
    }

    /// The slot a miss takes (an empty one first), by the policy; -1 when every slot is pinned.
    private func victim() -> Int {
        var best = -1
        func older(_ a: Int, _ b: Int) -> Bool { lastUse[a] < lastUse[b] }
        for s in 0..<slotCount where pins[s] == 0 {
            if keyOf[s] < 0 { return s }
            guard best >= 0 else { best = s; continue }
            switch policy {
            case .lru:
                if older(s, best) { best = s }
            case .lfu:
                let u = uses[keyOf[s]], ub = uses[keyOf[best]]
                if u < ub || (u == ub && older(s, best)) { best = s }
            case .slru:
                // probationary before protected, then the least recently used
                if (!protected[s] && protected[best]) || (protected[s] == protected[best] && older(s, best)) { best = s }
            }
        }
        return best
    }

    /// SLRU: `slot` joins the protected segment; past 80% of the slots, its least recently used
    /// unpinned member goes back to probation.
    private func promote(_ slot: Int) {
        protected[slot] = true
        protectedCount += 1
        let limit = max(1, slotCount * 4 / 5)
        if protectedCount > limit {
            var oldest = -1
            for s in 0..<slotCount where protected[s] && s != slot && (oldest < 0 || lastUse[s] < lastUse[oldest]) { oldest = s }
            if oldest >= 0 { protected[oldest] = false; protectedCount -= 1 }
        }
    }

    public func unpin(layer: Int, experts ids: ArraySlice<Int>) {
        // a slot is never handed to another expert while its read runs
        arrival.lock()
        while pinnedSlots.contains(where: { !arrived[$0] }) { arrival.wait() }
        arrival.unlock()
        // the last pin's slots (an expert whose read failed has left its slot's mapping)
        precondition(ids.count == pinnedSlots.count, "ExpertCache.unpin: not the last pin's experts")
        lock.lock()
        for s in pinnedSlots where pins[s] > 0 {
            pins[s] -= 1
            // a failed read leaves nothing worth keeping: the slot is free
            if failed[s] != nil, keyOf[s] >= 0 { slotOf[keyOf[s]] = -1; keyOf[s] = -1 }
        }
        lock.unlock()
        pinnedSlots.removeAll(keepingCapacity: true)
    }

    /// Where each of an expert's three parts starts past its region of a slot: an O_DIRECT read
    /// starts at the 4 KiB boundary before the part, which leaves the part that far in (no copy);
    /// a buffered read puts it at the region's start.
    struct Shifts: Equatable { var gate = 0, up = 0, down = 0 }

    private func shifts(_ loc: ExpertLocation) -> Shifts {
        func one(_ p: ExpertLocation.Part) -> Int { files[p.path]?.direct == true ? p.begin % Self.align : 0 }
        return Shifts(gate: one(loc.parts[0]), up: one(loc.parts[1]), down: one(loc.parts[2]))
    }

    /// Slot `s`'s tensors for expert `e` of `layer`: kept per (slot, layer) and rebuilt only when
    /// the expert's parts lie at other offsets than the last one's (an expert whose parts sit at
    /// other distances from a 4 KiB boundary in the file).
    private func view(slot s: Int, layer: Int, expert e: Int) -> ExpertWeights {
        let sh = shifts(experts[layer][e])
        if let v = views[s][layer], viewShifts[s][layer] == sh { return v }
        let base = slots[s]
        let parts = experts[layer][0].parts
        func t(_ p: Int, _ shift: Int) -> Tensor {
            Tensor(storage: TensorStorage(borrowing: base.base + partOffset[p] + shift, byteCount: parts[p].bytes, kind: .arena, owner: base),
                   dtype: parts[p].dtype, shape: parts[p].shape)
        }
        let v = ExpertWeights(gate: t(0, sh.gate), up: t(1, sh.up), down: t(2, sh.down))
        views[s][layer] = v
        viewShifts[s][layer] = sh
        return v
    }

    /// Part `p` of an expert into its region of `slot`; the bytes read.
    private func readPart(_ slot: Int, _ p: Int, _ part: ExpertLocation.Part) throws -> Int {
        let f = files[part.path]!, dst = slots[slot].base + partOffset[p]
        if f.direct {
            // the aligned range from the 4 KiB boundary before the part: the part lands
            // part.begin - start in, where the view points (no copy of megabytes per miss)
            let start = part.begin / Self.align * Self.align
            let length = (part.end - start + Self.align - 1) / Self.align * Self.align
            try FileIO.preadAligned(fd: f.fd, path: part.path, into: dst, count: length, offset: start, fileSize: f.size)
            return min(length, f.size - start)
        }
        try FileIO.pread(fd: f.fd, path: part.path, into: dst, count: part.bytes, offset: part.begin)
        FileIO.dropCache(fd: f.fd, offset: part.begin, count: part.bytes)
        return part.bytes
    }

}

