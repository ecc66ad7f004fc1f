import Foundation
import StrataTensor

/// Where one tensor lies in a checkpoint file.
public struct TensorLocation: Sendable {
    public var name: String
    public var path: String
    /// absolute byte range in the file
    public var begin: Int, end: Int
    public var dtype: DType
    public var shape: [Int]
    /// transformer layer, or -1 outside the layers
    public var layer: Int
    /// A routed expert's matrix: which (0 gate, 1 up, 2 down) and whose (nil: the layer's
    /// experts stacked, `[experts, rows, cols]`); nil for every other tensor.
    public var expert: (part: Int, index: Int?)?
    /// A routed expert's bias (gpt-oss: stacked `[experts, width]`), kept with its layer but read
    /// wherever the layer's experts run (expert shards).
    public var expertBias = false
    public init(name: String, path: String, begin: Int, end: Int, dtype: DType, shape: [Int], layer: Int,
                expert: (part: Int, index: Int?)? = nil) {
        self.name = name; self.path = path; self.begin = begin; self.end = end; self.dtype = dtype; self.shape = shape; self.layer = layer
        self.expert = expert
    }
}

extension TensorLocation {
    /// Every expert of every layer (`layers` of them), from the locations of their matrices:
    /// each expert's own tensors, or its slice of a stacked one. A layer whose experts lack a
    /// matrix, or differ in type or shape, is refused by name.
    public static func experts(_ locations: [TensorLocation], layers: Int, location: String) throws -> [[ExpertLocation]] {
        var parts = [[Int: [ExpertLocation.Part?]]](repeating: [:], count: layers)
        for l in locations {
            guard let x = l.expert, l.layer >= 0, l.layer < layers else { continue }
            if let e = x.index {
                guard l.shape.count == 2 else { throw TieredWeightStore.StoreError.badExpert(name: l.name, location: location, reason: "not a matrix: \(l.shape)") }
                parts[l.layer][e, default: [nil, nil, nil]][x.part] = .init(path: l.path, begin: l.begin, end: l.end, dtype: l.dtype, shape: l.shape)
            } else {
                guard l.shape.count == 3, l.shape[0] > 0, (l.end - l.begin) % l.shape[0] == 0 else {
                    throw TieredWeightStore.StoreError.badExpert(name: l.name, location: location, reason: "not [experts, rows, cols]: \(l.shape)")
                }
                let each = (l.end - l.begin) / l.shape[0]
                for e in 0..<l.shape[0] {
                    parts[l.layer][e, default: [nil, nil, nil]][x.part] =
                        .init(path: l.path, begin: l.begin + e * each, end: l.begin + (e + 1) * each, dtype: l.dtype, shape: Array(l.shape[1...]))
                }
            }
        }
        return try parts.enumerated().map { (layer, byExpert) in
            let n = byExpert.count
            return try (0..<n).map { e in
                guard let p = byExpert[e], let g = p[0], let u = p[1], let d = p[2] else {
                    throw TieredWeightStore.StoreError.badExpert(name: "layer \(layer) expert \(e)", location: location,
                                                                 reason: "missing matrices (experts 0..<\(n) expected, each with gate, up and down)")
                }
                if let first = byExpert[0]?.compactMap({ $0 }), first.count == 3,
                   zip(first, [g, u, d]).contains(where: { $0.dtype != $1.dtype || $0.shape != $1.shape }) {
                    throw TieredWeightStore.StoreError.badExpert(name: "layer \(layer) expert \(e)", location: location,
                                                                 reason: "its matrices differ in type or shape from expert 0's")
                }
                return ExpertLocation(layer: layer, expert: e, parts: [g, u, d])
            }
        }
    }
}

/// Counters of a weight store's disk traffic.
public struct WeightIOStats: Sendable, Codable {
    public var bytesRead = 0
    public var readSeconds = 0.0
    public var waitSeconds = 0.0
    public var layersLoaded = 0
    public init() {}
}

/// Weights in two tiers under a RAM budget.
///
/// - Resident tensors are read once into owned memory (charged to the ledger line
///   "resident layers" / "embeddings, norms, head"; the file's pages are dropped after the read). So are the vectors
///   (norms, biases) of streamed layers.
/// - Cold tensors (an untied token embedding) are read through a file mapping, a row at a time.
/// - Streamed layers live on disk and pass through a ring of `prefetchDepth + 1` staging slots
///   (ledger line "staging buffers"): an I/O thread reads layer after layer in the order the
///   forward pass uses them, each layer's byte range in one large read (O_DIRECT when the file
///   system allows, else buffered reads followed by POSIX_FADV_DONTNEED), so the page cache
///   does not grow. `acquire` waits for the layer (counted as I/O wait); `release` frees its
///   slot for the layer `prefetchDepth + 1` ahead. f16/bf16 tensors stay 16-bit in staging.
public final class TieredWeightStore: WeightStore, @unchecked Sendable {
    public let location: String
    public let streamedLayers: [Int]
    /// Streamed layers pass through the staging ring in order: forward passes must not overlap.
    public var streams: Bool { !streamedLayers.isEmpty }
    public let prefetchDepth: Int
    public let slotBytes: Int
    let ledger: Ledger
    private var resident: [String: Tensor] = [:]
    /// The expert cache, and the layers whose experts it reads.
    public let expertCache: ExpertCache?
    /// Routed experts spread over processes (nil: all here).
    private let shardSource: ExpertShards?
    private let expertLayers: Set<Int>
    private var locations: [String: TensorLocation] = [:]
    /// streamed layer -> its index in `streamedLayers`
    private var streamIndex: [Int: Int] = [:]
    /// per streamed layer: (file, aligned start, aligned length, offset in slot)
    private var segments: [[(path: String, start: Int, length: Int, slotOffset: Int)]] = []
    /// per streamed layer: tensor name -> byte offset in its slot
    private var tensorOffset: [String: Int] = [:]
    private var slots: [TensorStorage] = []
    /// what each slot holds: streamed index or -1; `loading` while being read
    private var slotLayer: [Int]
    private var slotBusy: [Bool]
    private var nextToLoad = 0
    private var nextToUse = 0
    private var failure: Error?
    private var stopping = false
    private let cond = NSCondition()
    private var thread: Thread?
    /// Signalled when the I/O thread has left its loop (and dropped the store)
    private let threadDone = DispatchSemaphore(value: 0)
    private var joined = false
    private var files: [String: (fd: Int32, direct: Bool, size: Int)] = [:]
    private var mappings: [String: MappedFile] = [:]
    /// Written by the I/O thread and the forward pass under `cond`; read through `stats`.
    private var counters = WeightIOStats()
    /// The I/O figures so far (a consistent copy, safe from any thread).
    public var stats: WeightIOStats { cond.lock(); defer { cond.unlock() }; return counters }

    static let align = 4096

    /// - Parameters:
    ///   - streamed: layers read from disk each pass (the rest, and every non-layer tensor, resident).
    /// - Parameters:
    ///   - cold: tensors read a row at a time through a file mapping instead (an untied token
    ///     embedding: one row per token, so the page cache it causes is a few pages a token).
    ///   - experts: the expert cache a mixture's routed experts are read through (their tensors
    ///     are then neither resident nor in the layers' staging); nil: experts are layer tensors.
    ///   - elsewhere: layers other processes of a pipeline hold: their tensors are zero pages
    ///     (`ZeroPages`: no RAM, no read), never charged; this process never runs those layers.
    ///   - shards: the routed experts spread over processes: this process holds its range of every
    ///     layer's experts (resident, even in layers held elsewhere; a stacked tensor's other
    ///     experts are unbacked pages), the others' are zero pages. Not with `experts`.
    public init(locations allLocations: [TensorLocation], streamed: Set<Int>, prefetchDepth: Int, ledger: Ledger, location: String,
                cold: Set<String> = [], experts: ExpertCache? = nil, elsewhere: Set<Int> = [], shards: ExpertShards? = nil) throws {
        precondition(prefetchDepth >= 0, "TieredWeightStore: negative prefetch depth")
        precondition(shards == nil || experts == nil, "TieredWeightStore: expert shards and an expert cache")
        /// Which of a routed expert's tensor this process holds: all of it, none, or some experts of a stacked one.
        enum Share { case all, none, some(Range<Int>) }
        func share(_ l: TensorLocation) -> Share {
            if shards != nil && l.expertBias { return .all }  // small, and read by whichever process runs the experts
            guard let shards, let x = l.expert, l.layer >= 0 else { return elsewhere.contains(l.layer) ? .none : .all }
            let mine = shards.experts(of: shards.rank, layer: l.layer)
            if let e = x.index { return mine.contains(e) ? .all : .none }
            let n = l.shape.first ?? 0
            return mine.lowerBound <= 0 && mine.upperBound >= n ? .all : mine.isEmpty ? .none : .some(mine.clamped(to: 0..<n))
        }
        var held: [TensorLocation] = [], phantoms: [TensorLocation] = [], partial: [(TensorLocation, Range<Int>)] = []
        for l in allLocations {
            switch share(l) {
            case .all: held.append(l)
            case .none: if experts == nil || l.expert == nil { phantoms.append(l) }
            case let .some(r): partial.append((l, r))
            }
        }
        let locations = experts == nil ? held : held.filter { $0.expert == nil }
        self.shardSource = shards
        expertCache = experts
        expertLayers = Set(allLocations.compactMap { $0.expert != nil ? $0.layer : nil })
        self.location = location
        self.ledger = ledger
        self.prefetchDepth = prefetchDepth
        streamedLayers = streamed.sorted()
        for l in locations { self.locations[l.name] = l }
        for (i, l) in streamedLayers.enumerated() { streamIndex[l] = i }
        // staging layout of each streamed layer: one aligned segment per contiguous run in a file
        var maxSlot = 0
        for layer in streamedLayers {
            let (segs, offsets, bytes) = Self.staging(locations, layer: layer)
            for (n, o) in offsets { tensorOffset[n] = o }
            segments.append(segs)
            maxSlot = max(maxSlot, bytes)
        }
        slotBytes = maxSlot
        let slotCount = streamedLayers.isEmpty ? 0 : min(prefetchDepth + 1, streamedLayers.count)
        slotLayer = [Int](repeating: -1, count: slotCount)
        slotBusy = [Bool](repeating: false, count: slotCount)
        try ledger.charge(.staging, slotCount * slotBytes)
        slots = (0..<slotCount).map { _ in TensorStorage(byteCount: slotBytes, alignment: Self.align, hugePages: true) }
        // resident tensors: read once, pages dropped
        var buffered: [String: Int32] = [:]
        defer { for (_, fd) in buffered { FileIO.closeFile(fd) } }
        for l in locations where cold.contains(l.name) {
            let m = try mappings[l.path] ?? MappedFile(path: l.path)
            mappings[l.path] = m
            resident[l.name] = Tensor(storage: m.storage(offset: l.begin, count: l.end - l.begin), dtype: l.dtype, shape: l.shape)
        }
        // with layers streamed, read through O_DIRECT with the first staging slot (already charged,
        // not yet in use) as the bounce buffer, where the file system allows: buffered reads leave
        // readahead and the pages at each tensor's ends in the page cache, which a memory cgroup
        // counts; else (or with every layer resident) buffered reads, the pages dropped after each tensor
        var direct: [String: (fd: Int32, size: Int)] = [:]
        defer { for (_, d) in direct { FileIO.closeFile(d.fd) } }
        let bounce = slots.first
        let bounceBytes = slotBytes / Self.align * Self.align
        for l in locations where (!streamed.contains(l.layer) || Self.keptResident(l)) && !cold.contains(l.name) {
            try ledger.charge(l.layer < 0 ? .otherWeights : .layerWeights, l.end - l.begin)
            let t = Tensor(storage: TensorStorage(byteCount: l.end - l.begin, hugePages: true), dtype: l.dtype, shape: l.shape)
            if bounce != nil && bounceBytes >= 2 * Self.align && direct[l.path] == nil, let dfd = try FileIO.openReadDirect(l.path) {
                direct[l.path] = (dfd, try FileIO.size(fd: dfd, path: l.path))
            }
            if let d = direct[l.path], let b = bounce {
                var pos = l.begin
                while pos < l.end {
                    let start = pos / Self.align * Self.align
                    let length = min(bounceBytes, (l.end - start + Self.align - 1) / Self.align * Self.align)
                    try FileIO.preadAligned(fd: d.fd, path: l.path, into: b.base, count: length, offset: start, fileSize: d.size)
                    let n = min(l.end, start + length) - pos
                    (t.rawPointer + (pos - l.begin)).copyMemory(from: b.base + (pos - start), byteCount: n)
                    pos += n
                }
            } else {
                let fd = try buffered[l.path] ?? FileIO.openRead(l.path)
                buffered[l.path] = fd
                try FileIO.pread(fd: fd, path: l.path, into: t.rawPointer, count: l.end - l.begin, offset: l.begin)
                FileIO.dropCache(fd: fd, offset: l.begin, count: l.end - l.begin)
            }
            resident[l.name] = t
        }
        // a stacked expert tensor of which this process holds some experts: those slices read in, the rest unbacked
        for (l, r) in partial {
            precondition(!streamed.contains(l.layer), "TieredWeightStore: a layer of expert shards streamed")
            let each = (l.end - l.begin) / max(1, l.shape[0])
            let pages = try ZeroPages(size: l.end - l.begin, writable: true)
            FileIO.adviseHugePages(pages.base, count: pages.size / TensorStorage.hugePage * TensorStorage.hugePage)  // as resident tensors ask
            try ledger.charge(.layerWeights, r.count * each)
            let fd = try buffered[l.path] ?? FileIO.openRead(l.path)
            buffered[l.path] = fd
            try FileIO.pread(fd: fd, path: l.path, into: pages.base + r.lowerBound * each, count: r.count * each, offset: l.begin + r.lowerBound * each)
            FileIO.dropCache(fd: fd, offset: l.begin + r.lowerBound * each, count: r.count * each)
            resident[l.name] = Tensor(storage: pages.storage(offset: 0, count: l.end - l.begin), dtype: l.dtype, shape: l.shape)
            self.locations[l.name] = l
        }
        // another stage's tensors: views of one zero mapping as large as the largest of them
        if let largest = phantoms.map({ $0.end - $0.begin }).max() {
            precondition(streamed.isDisjoint(with: elsewhere), "TieredWeightStore: a layer both streamed and held elsewhere")
            let zeros = try ZeroPages(size: largest)
            for l in phantoms {
                resident[l.name] = Tensor(storage: zeros.storage(offset: 0, count: l.end - l.begin), dtype: l.dtype, shape: l.shape)
                self.locations[l.name] = l
            }
        }
        if slotCount > 0 {
            for segs in segments { for seg in segs { _ = try file(seg.path) } }
            // the thread holds the store only while it loads a layer (or waits up to 0.1 s for a
            // free slot), so a store dropped without shutdown() is still freed and the thread ends
            let t = Thread { [weak self, threadDone] in
                while let store = self, store.loadNext() {}
                threadDone.signal()
            }
            t.name = "strata-weight-io"
            thread = t
            t.start()
        }
    }

    /// How `layer` streams through a staging slot (`locations` without the tensors read otherwise):
    /// its matrices in one aligned segment per run of a file (tensors less than 1 MiB apart share
    /// one, the gap read too), each tensor's offset in the slot, and the slot's bytes.
    static func staging(_ locations: [TensorLocation], layer: Int)
        -> (segments: [(path: String, start: Int, length: Int, slotOffset: Int)], offsets: [(String, Int)], bytes: Int) {
        let ts = locations.filter { $0.layer == layer && !keptResident($0) }.sorted { ($0.path, $0.begin) < ($1.path, $1.begin) }
        var segs: [(path: String, start: Int, length: Int, slotOffset: Int)] = [], offsets: [(String, Int)] = []
        var slotPos = 0, i = 0
        while i < ts.count {
            var j = i
            var end = ts[i].end
            while j + 1 < ts.count && ts[j + 1].path == ts[i].path && ts[j + 1].begin - end < (1 << 20) { j += 1; end = max(end, ts[j].end) }
            let start = ts[i].begin / align * align
            let length = (end - start + align - 1) / align * align
            for t in ts[i...j] { offsets.append((t.name, slotPos + (t.begin - start))) }
            segs.append((ts[i].path, start, length, slotPos))
            slotPos += length
            i = j + 1
        }
        return (segs, offsets, slotPos)
    }

    /// The staging slot's bytes for each of `layers` layers were it streamed (0 for a layer with
    /// nothing to stream), with a mixture's experts read through an expert cache or not: what the
    /// placement sizes the slots by (the store's own layout).
    public static func stagingBytes(_ locations: [TensorLocation], layers: Int, expertCache: Bool) -> [Int] {
        let locs = expertCache ? locations.filter { $0.expert == nil } : locations
        return (0..<layers).map { staging(locs, layer: $0).bytes }
    }

    /// Vectors (norm weights, biases) of streamed layers stay resident: a few KiB per layer, which
    /// the models copy to f32 when they are built, so building a model needs no streamed layer
    /// read (it used to cost a whole extra pass over the streamed layers at load). A mixture's
    /// stacked expert biases (gpt-oss's `[experts, width]`) are vectors too.
    public static func keptResident(_ l: TensorLocation) -> Bool { l.shape.count < 2 || l.name.hasSuffix(".bias") || l.name.hasSuffix("_bias") }

    deinit {
        cond.lock(); stopping = true; cond.broadcast(); cond.unlock()
        for (_, f) in files { FileIO.closeFile(f.fd) }
    }

    /// Stops the I/O thread and waits until it has left (call before dropping the store): when
    /// this returns, nothing but the caller holds the store, so whatever it owns is freed with
    /// it (a run's model, say) before the run returns, not some time after.
    public func shutdown() {
        cond.lock()
        stopping = true
        cond.broadcast()
        let wait = thread != nil && !joined
        joined = true
        cond.unlock()
        if wait { threadDone.wait() }
    }

    private func file(_ path: String) throws -> (fd: Int32, direct: Bool, size: Int) {
        if let f = files[path] { return f }
        let f = try FileIO.openForLargeReads(path)
        files[path] = f
        return f
    }

    public func contains(_ name: String) -> Bool { locations[name] != nil }

    public func experts(layer: Int) -> ExpertSource? { expertLayers.contains(layer) ? expertCache : nil }

    public func shards(layer: Int) -> ExpertShards? { shardSource }

    public func tensor(_ name: String, layer: Int) throws -> Tensor {
        if let t = resident[name] { return t }
        guard let l = locations[name] else { throw StoreError.missingTensor(name: name, location: location) }
        guard let si = streamIndex[l.layer], let off = tensorOffset[name] else { throw StoreError.missingTensor(name: name, location: location) }
        let slot = si % slots.count
        let s = slots[slot]
        return Tensor(storage: TensorStorage(borrowing: s.base + off, byteCount: l.end - l.begin, kind: .arena, owner: s), dtype: l.dtype, shape: l.shape)
    }

    public enum StoreError: Error, CustomStringConvertible {
        case missingTensor(name: String, location: String)
        case outOfOrder(expected: Int, got: Int)
        case badExpert(name: String, location: String, reason: String)
        public var description: String {
            switch self {
            case let .missingTensor(n, l): return "\(l): missing tensor '\(n)'"
            case let .badExpert(n, l, r): return "\(l): routed expert \(n): \(r)"
            case let .outOfOrder(e, g): return "streamed layers used out of order: expected layer \(e), got \(g)"
            }
        }
    }

    public func acquire(layer: Int) throws {
        guard let si = streamIndex[layer] else { return }
        let t0 = Self.clock()
        cond.lock(); defer { cond.unlock() }
        if si != nextToUse { throw StoreError.outOfOrder(expected: streamedLayers[nextToUse], got: layer) }
        let slot = si % slots.count
        while slotLayer[slot] != si || slotBusy[slot] {
            if let f = failure { throw f }
            cond.wait()
        }
        counters.waitSeconds += Self.clock() - t0
        if Self.trace { Self.traceLine("wait", si, t0, Self.clock() - t0) }
    }

    public func release(layer: Int) {
        guard let si = streamIndex[layer] else { return }
        cond.lock()
        let slot = si % slots.count
        slotLayer[slot] = -1
        nextToUse = (si + 1) % streamedLayers.count
        cond.broadcast()
        cond.unlock()
    }

    /// Loads the next streamed layer into its slot once the slot is free. Returns false when the
    /// store is stopping or a read failed; true to be called again (also after 0.1 s without a
    /// free slot, so the caller can let go of the store).
    private func loadNext() -> Bool {
        cond.lock()
        // the next layer goes into its slot once the slot is empty
        var slot = nextToLoad % slots.count
        while !stopping && slotLayer[slot] != -1 {
            if !cond.wait(until: Date(timeIntervalSinceNow: 0.1)) { cond.unlock(); return true }
            slot = nextToLoad % slots.count
        }
        if stopping { cond.unlock(); return false }
        let si = nextToLoad
        slotBusy[slot] = true
        slotLayer[slot] = si
        cond.unlock()
        do {
            let t0 = Self.clock()
            var bytes = 0
            for seg in segments[si] {
                let f = try file(seg.path)
                let dst = slots[slot].base + seg.slotOffset
                if f.direct {
                    try FileIO.preadAligned(fd: f.fd, path: seg.path, into: dst, count: seg.length, offset: seg.start, fileSize: f.size)
                } else {
                    let n = min(seg.length, f.size - seg.start)
                    try FileIO.pread(fd: f.fd, path: seg.path, into: dst, count: n, offset: seg.start)
                    FileIO.dropCache(fd: f.fd, offset: seg.start, count: n)
                }
                bytes += min(seg.length, f.size - seg.start)
            }
            cond.lock()
            counters.bytesRead += bytes
            counters.readSeconds += Self.clock() - t0
            if Self.trace { Self.traceLine("read", si, t0, Self.clock() - t0) }
            counters.layersLoaded += 1
            slotBusy[slot] = false
            nextToLoad = (si + 1) % streamedLayers.count
            cond.broadcast()
            cond.unlock()
            return true
        } catch {
            cond.lock(); failure = error; slotBusy[slot] = false; cond.broadcast(); cond.unlock()
            return false
        }
    }

    static func clock() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// `STRATA_TRACE=1`: one stderr line per streamed read ("read", its index in the stream order,
    /// start, seconds) and per wait of the forward pass for a layer ("wait", ...), to see where
    /// the disk idles (docs/planner.md). Off by default: nothing is formatted.
    static let trace = FileIO.environment("STRATA_TRACE") != nil
    static func traceLine(_ what: String, _ index: Int, _ start: Double, _ seconds: Double) {
        FileHandle.standardError.write(Data(String(format: "%@ %d %.6f %.6f\n", what, index, start, seconds).utf8))
    }
}
