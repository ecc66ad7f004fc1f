import Foundation
import StrataFormats
import StrataTensor

/// A mixture of experts as config.json describes it (Qwen3-MoE, Mixtral): the shape
/// (`MoEShape`) and how the router's choice is weighted.
public struct MoEConfig: Sendable, Equatable {
    public var shape: MoEShape
    /// Whether the k chosen probabilities are divided by their sum (Mixtral always;
    /// Qwen3-MoE by `norm_topk_prob`; gpt-oss's softmax over the k chosen logits is the same).
    public var normalizeTopK: Bool
    /// gpt-oss: the router has a bias, and so has each expert's every projection.
    public var routerBias = false, expertBias = false
    /// The experts' gated activation.
    public var activation: MoEActivation = .swiglu
    /// gpt-oss: the k largest router logits chosen, weighted by the softmax over them (the
    /// others choose among the softmax's probabilities).
    public var selectOnLogits = false

    /// How an architecture reads its experts from config.json.
    public struct Defaults: Sendable {
        var experts: Int
        var expertsPerToken: Int
        /// Qwen3-MoE: `moe_intermediate_size` (this default); nil: the experts are
        /// `intermediate_size` wide (Mixtral).
        var intermediate: Int?
        /// nil: `norm_topk_prob` decides (default false, as transformers); Mixtral: always true.
        var normalizeTopK: Bool?
    }

    enum Keys: String, CodingKey {
        case experts = "num_experts", localExperts = "num_local_experts", perToken = "num_experts_per_tok"
        case intermediate = "moe_intermediate_size", norm = "norm_topk_prob", sparseStep = "decoder_sparse_step"
        case mlpOnly = "mlp_only_layers"
    }

    /// Reads the experts of a model of `layers` layers whose dense MLP is `intermediate` wide.
    init(from decoder: Decoder, defaults d: Defaults, layers: Int, intermediate: Int, file: String) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        // Qwen3-MoE's hub configs say num_experts; transformers 5 writes num_local_experts
        let experts = try c.decodeIfPresent(Int.self, forKey: .experts) ?? c.decodeIfPresent(Int.self, forKey: .localExperts) ?? d.experts
        let perToken = try c.decodeIfPresent(Int.self, forKey: .perToken) ?? d.expertsPerToken
        let width = d.intermediate == nil ? intermediate : try c.decodeIfPresent(Int.self, forKey: .intermediate) ?? d.intermediate!
        normalizeTopK = try d.normalizeTopK ?? (c.decodeIfPresent(Bool.self, forKey: .norm) ?? false)
        var sparse = [Bool](repeating: true, count: layers)
        if d.intermediate != nil {
            // transformers' Qwen3-MoE: layer i is sparse unless listed in mlp_only_layers, and
            // only every decoder_sparse_step-th layer ((i + 1) % step == 0)
            let step = try c.decodeIfPresent(Int.self, forKey: .sparseStep) ?? 1
            if step < 1 { throw ConfigError.invalidValue(file: file, field: "decoder_sparse_step", reason: "must be >= 1, got \(step)") }
            let only = try c.decodeIfPresent([Int].self, forKey: .mlpOnly) ?? []
            for i in only where !(0..<layers).contains(i) {
                throw ConfigError.invalidValue(file: file, field: "mlp_only_layers", reason: "layer \(i) is not in 0..<\(layers)")
            }
            sparse = (0..<layers).map { !only.contains($0) && ($0 + 1) % step == 0 }
        }
        shape = MoEShape(experts: experts, expertsPerToken: perToken, intermediate: width, sparseLayers: sparse)
        try shape.validate(file: file)
    }
}

/// How an expert gates its up projection.
public enum MoEActivation: Sendable, Equatable {
    /// silu(gate) * up (Qwen3-MoE, Mixtral)
    case swiglu
    /// gpt-oss: g = min(gate, limit), u = clamp(up, -limit, limit), g * sigmoid(alpha g) * (u + 1)
    case clampedSwiGLU(alpha: Float, limit: Float)
}

/// One routed expert's gated MLP: `gate` and `up` (`[intermediate, hidden]`), or gpt-oss's hub
/// layout `gateUp` (`[hidden, 2 intermediate]`, `.inOut`, gate and up columns interleaved).
struct Expert {
    let gate: WeightMatrix?, up: WeightMatrix?, gateUp: WeightMatrix?
    /// [hidden, intermediate] (gpt-oss's hub layout: [intermediate, hidden], `.inOut`)
    let down: WeightMatrix
    init(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix) { self.gate = gate; self.up = up; gateUp = nil; self.down = down }
    init(gateUp: WeightMatrix, down: WeightMatrix) { gate = nil; up = nil; self.gateUp = gateUp; self.down = down }
    var matrices: [WeightMatrix] { [gate, up, gateUp, down].compactMap { $0 } }
    var intermediate: Int { gate?.outFeatures ?? gateUp!.outFeatures / 2 }
}

/// A layer's experts' biases, stacked (gpt-oss): `[experts, intermediate]` for gate and up, or
/// `[experts, 2 intermediate]` interleaved for the hub layout's gateUp; `[experts, hidden]` for down.
struct ExpertBiases {
    let gate: Tensor?, up: Tensor?, gateUp: Tensor?, down: Tensor
}

/// A layer's mixture of experts: the router (a linear map to one logit per expert), the softmax
/// over them, the k most probable experts per token (their probabilities, divided by their sum
/// when `normalizeTopK`), and each chosen expert's MLP added to the residual weighted by its
/// probability. Tokens routed to one expert go through it together (one few-row call, or one
/// GEMM for a prefill chunk): each expert's weights are read once per pass.
struct MoELayer {
    /// [experts, hidden]
    let router: WeightMatrix
    /// the experts when they are among the layer's tensors; empty when `source` reads them
    let experts: [Expert]
    /// the expert cache this layer's experts are read through (nil: `experts`)
    let source: ExpertSource?
    /// the processes other experts of this layer run on (expert shards; nil: all here)
    let shards: ExpertShards?
    let layer: Int
    let count: Int
    let k: Int
    let normalizeTopK: Bool
    /// gpt-oss: the k largest router logits, then the softmax over those k
    let selectOnLogits: Bool
    let activation: MoEActivation
    /// the experts' biases (gpt-oss; nil: none), kept with the layer when the experts stream
    let biases: ExpertBiases?
    /// how often each expert was chosen (`RoutingCounted`)
    let tally: RoutingTally

    /// Reads layer `layer`'s router and experts by role: each expert's own tensors (a hub
    /// checkpoint), or its slice of the layer's stacked tensor (a GGUF's `ffn_*_exps`).
    init(_ w: WeightLoader, layer: Int, config: MoEConfig) throws {
        router = WeightMatrix(try w.weight(.router, layer: layer), bias: config.routerBias ? try w.bias(.router, layer: layer) : nil)
        let n = config.shape.experts, ff = config.shape.intermediate, h = router.inFeatures
        self.layer = layer
        count = n
        tally = RoutingTally(experts: n)
        k = config.shape.expertsPerToken
        normalizeTopK = config.normalizeTopK
        selectOnLogits = config.selectOnLogits
        activation = config.activation
        func stacked(_ role: TensorRole) throws -> Tensor? {
            let name = w.name(role, layer: layer)
            guard w.store.contains(name) else { return nil }
            return try w.tensor(name, [n] + w.shape(role), layer: layer)
        }
        // gpt-oss's hub layout: gate|up interleaved in one [experts, hidden, 2 ff] parameter, down [experts, ff, hidden]
        let hubLayout = w.table!.has(.expertGateUp) && w.store.contains(w.table!.name(.expertGateUp, layer: layer, prefix: w.prefix))
        func required(_ role: TensorRole, kind: String = "weight", _ shape: [Int]) throws -> Tensor {
            try w.tensor(w.table!.name(role, layer: layer, kind: kind, prefix: w.prefix), [n] + shape, layer: layer)
        }
        if config.expertBias {
            biases = hubLayout
                ? ExpertBiases(gate: nil, up: nil, gateUp: try required(.expertGateUp, kind: "bias", [2 * ff]).contiguousF32(),
                               down: try required(.expertDownInOut, kind: "bias", [h]).contiguousF32())
                : ExpertBiases(gate: try required(.expertGate, kind: "bias", [ff]).contiguousF32(), up: try required(.expertUp, kind: "bias", [ff]).contiguousF32(),
                               gateUp: nil, down: try required(.expertDown, kind: "bias", [h]).contiguousF32())
        } else {
            biases = nil
        }
        if hubLayout {
            let gu = try required(.expertGateUp, [h, 2 * ff]), down = try required(.expertDownInOut, [ff, h])
            source = nil
            shards = nil  // the hub layout's experts are their layer's tensors: with the layer, not shards
            experts = (0..<n).map { Expert(gateUp: WeightMatrix(gu.expert($0), layout: .inOut), down: WeightMatrix(down.expert($0), layout: .inOut)) }
            return
        }
        source = w.store.experts(layer: layer)
        shards = w.store.shards(layer: layer)
        if source != nil {
            experts = []
            return
        }
        let gates = try stacked(.expertGate), ups = try stacked(.expertUp), downs = try stacked(.expertDown)
        experts = try (0..<n).map { e in
            func one(_ role: TensorRole, _ all: Tensor?) throws -> WeightMatrix {
                if let all { return WeightMatrix(all.expert(e)) }
                return WeightMatrix(try w.tensor(w.table!.name(role, layer: layer, expert: e, prefix: w.prefix), w.shape(role), layer: layer))
            }
            return Expert(gate: try one(.expertGate, gates), up: try one(.expertUp, ups), down: try one(.expertDown, downs))
        }
    }

    var matrices: [WeightMatrix] { [router] + experts.flatMap(\.matrices) }

    /// `STRATA_MOE_ROUTING` (`MoERouting`): a benchmark's routing in place of the router's.
    static let benchmarkRouting = MoERouting.fromEnvironment

    /// `x[0..<rows] += MoE(xn[0..<rows])`. Buffers from `ws` (`moe`, `ffA`, `ffB`).
    func apply(_ xn: UnsafePointer<Float>, rows r: Int, into x: UnsafeMutablePointer<Float>, ws: Workspace) throws {
        let m = ws.moe!, h = router.inFeatures, n = count
        let logits = m.router.f32, conv = ws.convertScratch
        router.apply(xn, rows: r, logits, scratch: conv)
        // transformers' Qwen3-MoE and Mixtral choose among the probabilities, gpt-oss among the logits
        // (the same order, but rounding can tie or swap near-equal values: each as its reference)
        if !selectOnLogits { Ops.softmax(logits, rows: r, n: n) }
        // the k most probable experts of each row; counts per expert
        for e in 0..<n { m.counts[e] = 0 }
        let drawn = MoELayer.benchmarkRouting
        if drawn != .model {
            // a benchmark's routing: k distinct experts drawn (uniformly, or by a Zipf law over a
            // per-layer order of the experts), equal weights
            for i in 0..<r {
                for j in 0..<k {
                    var e: Int
                    repeat { e = drawn.draw(n, layer: layer, m) } while m.chosen(i, upTo: j, e, k: k)
                    m.choice[i * k + j] = Int32(e)
                    m.weight[i * k + j] = 1 / Float(k)
                    m.counts[e] += 1
                }
            }
        }
        for i in 0..<r where drawn == .model {
            let p = logits + i * n
            var sum: Float = 0
            for j in 0..<k {
                var best = -1, bestP = -Float.infinity
                for e in 0..<n where p[e] > bestP && !m.chosen(i, upTo: j, e, k: k) { best = e; bestP = p[e] }
                if best < 0 {
                    // NaN probabilities (a non-finite row): any expert, so the NaN reaches the
                    // logits and the caller's finite check names where it came from
                    best = (0..<n).first { !m.chosen(i, upTo: j, $0, k: k) }!
                    bestP = p[best]
                }
                m.choice[i * k + j] = Int32(best)
                m.weight[i * k + j] = bestP
                sum += bestP
                m.counts[best] += 1
            }
            if selectOnLogits {
                // gpt-oss: the softmax over the chosen logits (the first is their max)
                let top = m.weight[i * k]
                sum = 0
                for j in 0..<k { m.weight[i * k + j] = expf(m.weight[i * k + j] - top); sum += m.weight[i * k + j] }
                for j in 0..<k { m.weight[i * k + j] /= sum }
            } else if normalizeTopK {
                for j in 0..<k { m.weight[i * k + j] /= sum }
            }
        }
        tally.add(m.counts, rows: r)
        // rows grouped by expert (a counting sort): expert e's (row, slot) pairs at starts[e]...
        var at = 0
        for e in 0..<n { m.starts[e] = at; at += m.counts[e]; m.counts[e] = 0 }
        for i in 0..<(r * k) {
            let e = Int(m.choice[i])
            m.order[m.starts[e] + m.counts[e]] = Int32(i)
            m.counts[e] += 1
        }
        if let shards, source == nil {
            // expert shards: the rows routed to each other process's experts go there in one
            // message, its outputs come back to their places in `out` (a process's experts are a
            // contiguous range, so their slots are too) while this process runs its own
            m.sentTo.removeAll(keepingCapacity: true)
            for q in 0..<shards.ranks where q != shards.rank {
                let range = shards.experts(of: q, layer: layer)
                m.ids.removeAll(keepingCapacity: true); m.idCounts.removeAll(keepingCapacity: true); m.rowIDs.removeAll(keepingCapacity: true)
                for e in range where m.counts[e] > 0 {
                    m.ids.append(Int32(e)); m.idCounts.append(Int32(m.counts[e]))
                    for j in 0..<m.counts[e] { m.rowIDs.append(m.order[m.starts[e] + j] / Int32(k)) }
                }
                if m.ids.isEmpty { continue }
                try m.ids.withUnsafeBufferPointer { ids in
                    try m.idCounts.withUnsafeBufferPointer { counts in
                        try m.rowIDs.withUnsafeBufferPointer { rowIDs in
                            try shards.send(layer: layer, to: q, experts: ids, counts: counts, rowIDs: rowIDs, xn: xn, hidden: h)
                        }
                    }
                }
                m.sentTo.append(q)
            }
            for e in shards.experts(of: shards.rank, layer: layer) where m.counts[e] > 0 { enqueue(e, experts[e], xn, ws) }
            flush(xn, ws)
            for q in m.sentTo {
                let range = shards.experts(of: q, layer: layer)
                let first = m.starts[range.lowerBound], end = m.starts[range.upperBound - 1] + m.counts[range.upperBound - 1]
                try shards.receive(layer: layer, from: q, into: m.out.f32 + first * h, rows: end - first, hidden: h)
            }
        } else if let source {
            // through the expert cache: the chosen experts pinned a group at a time (all at once
            // when the slots allow); those in RAM compute while the missing ones are read
            m.active.removeAll(keepingCapacity: true)
            for e in 0..<n where m.counts[e] > 0 { m.active.append(e) }
            var next = 0
            while next < m.active.count {
                let group = m.active[next..<min(m.active.count, next + source.slotCount)]
                try source.pin(layer: layer, experts: group, into: &m.pinned)
                defer { source.unpin(layer: layer, experts: group) }
                // those in RAM together; each of the others as it arrives
                for (i, e) in group.enumerated() { m.done[i] = source.ready(i); if m.done[i] { enqueue(e, expert(m.pinned[i]), xn, ws) } }
                flush(xn, ws)
                for (i, e) in group.enumerated() where !m.done[i] {
                    try source.wait(i)
                    run(e, m.pinned[i], xn, ws)
                }
                next += group.count
            }
        } else {
            for e in 0..<n where m.counts[e] > 0 { enqueue(e, experts[e], xn, ws) }
            flush(xn, ws)
        }
        // each row's experts' outputs added in expert order (as the experts ran in the order above
        // when they were all in RAM: the sums do not depend on which arrived first)
        let out = m.out.f32
        for e in 0..<n where m.counts[e] > 0 {
            for j in 0..<m.counts[e] {
                let at = m.starts[e] + j, slot = Int(m.order[at]), row = slot / k, wgt = m.weight[slot]
                let dst = x + row * h, src = out + at * h
                for c in 0..<h { dst[c] += wgt * src[c] }
            }
        }
    }

    /// Another process's request (expert shards): `experts[i]` over `counts[i]` rows each, the
    /// rows together in `rows` (`[sum(counts), hidden]`); their outputs, in the same order, to
    /// `out`. The same computation as when the rows' own pass runs an expert here. `ws` is a
    /// workspace of its own (the process's pass may be under way).
    func serve(experts ids: UnsafeBufferPointer<Int32>, counts: UnsafeBufferPointer<Int32>, rows: UnsafePointer<Float>,
               out: UnsafeMutablePointer<Float>, ws: Workspace) {
        let m = ws.moe!, h = router.inFeatures
        var at = 0
        for (i, e32) in ids.enumerated() {
            let e = Int(e32), c = Int(counts[i])
            m.starts[e] = at; m.counts[e] = c
            for j in 0..<c { m.order[at + j] = Int32((at + j) * k) }  // row at + j of `rows`
            at += c
        }
        for e32 in ids { enqueue(Int(e32), experts[Int(e32)], rows, ws) }
        flush(rows, ws)
        out.update(from: m.out.f32, count: at * h)
    }

    /// Expert `e` over its rows: into the batch `flush` runs when the few-row kernels take all its
    /// matrices at its row count, else at once (`run`: each matrix's rows across the threads).
    private func enqueue(_ e: Int, _ ex: Expert, _ xn: UnsafePointer<Float>, _ ws: Workspace) {
        let m = ws.moe!, c = m.counts[e]
        guard let g = ex.gate, let u = ex.up, g.fewRowKernel(rows: c), u.fewRowKernel(rows: c), ex.down.fewRowKernel(rows: c) else {
            run(e, ex, xn, ws)
            return
        }
        m.queued.append(e)
        m.queuedExperts.append(ex)
    }

    /// The queued experts (`enqueue`), as many at a time as the buffers hold rows for: every one's
    /// gate and up as one job on the pool, the activations, every one's down as another job (a
    /// thread takes whole matrices' rows: two waits per group instead of three per expert). Each
    /// output row is computed as `run` computes it.
    private func flush(_ xn: UnsafePointer<Float>, _ ws: Workspace) {
        let m = ws.moe!, h = router.inFeatures
        defer { m.queued.removeAll(keepingCapacity: true); m.queuedExperts.removeAll(keepingCapacity: true) }
        guard let ff = m.queuedExperts.first?.intermediate else { return }
        let rowsIn = m.rows.f32, a = ws.ffA.f32, b = ws.ffB.f32, out = m.out.f32
        let fits = min(m.rows.count / h, ws.ffA.count / ff, ws.ffB.count / ff)
        var i = 0
        while i < m.queued.count {
            var j = i, slots = 0
            while j < m.queued.count && slots + m.counts[m.queued[j]] <= fits { slots += m.counts[m.queued[j]]; j += 1 }
            if j - i <= 1 {
                // one expert (or one larger than the buffers): its matrices on the pool one after another
                run(m.queued[i], m.queuedExperts[i], xn, ws)
                i += 1
                continue
            }
            m.batch.removeAll()
            var at = 0
            for t in i..<j {
                let e = m.queued[t], ex = m.queuedExperts[t], cnt = m.counts[e], first = m.starts[e]
                for r in 0..<cnt { (rowsIn + (at + r) * h).update(from: xn + Int(m.order[first + r]) / k * h, count: h) }
                let g = ex.gate!.tensor, u = ex.up!.tensor
                m.batch.append(weight: g.rawPointer, dtype: g.dtype, outFeatures: ff, inFeatures: h, x: rowsIn + at * h, rows: cnt, y: a + at * ff)
                m.batch.append(weight: u.rawPointer, dtype: u.dtype, outFeatures: ff, inFeatures: h, x: rowsIn + at * h, rows: cnt, y: b + at * ff)
                at += cnt
            }
            m.batch.run()
            at = 0
            for t in i..<j {
                let e = m.queued[t], cnt = m.counts[e]
                if let bs = biases { addRow(bs.gate!, e, a + at * ff, rows: cnt, width: ff); addRow(bs.up!, e, b + at * ff, rows: cnt, width: ff) }
                at += cnt
            }
            if activation == .swiglu {
                Ops.swiglu(a, b, count: at * ff)
            } else {
                for q in 0..<(at * ff) { a[q] = activate(a[q], b[q]) }
            }
            m.batch.removeAll()
            at = 0
            for t in i..<j {
                let e = m.queued[t], d = m.queuedExperts[t].down, cnt = m.counts[e]
                m.batch.append(weight: d.tensor.rawPointer, dtype: d.tensor.dtype, outFeatures: h, inFeatures: ff,
                               x: a + at * ff, rows: cnt, y: out + m.starts[e] * h)
                at += cnt
            }
            m.batch.run()
            if let bias = biases?.down { for t in i..<j { let e = m.queued[t]; addRow(bias, e, out + m.starts[e] * h, rows: m.counts[e], width: h) } }
            i = j
        }
    }

    /// Expert `e`'s MLP over the rows routed to it; its output rows go to `out` at their places in
    /// `order` (added to the residual afterwards).
    private func run(_ e: Int, _ ex: Expert, _ xn: UnsafePointer<Float>, _ ws: Workspace) {
        let m = ws.moe!, h = router.inFeatures, conv = ws.convertScratch
        let rowsIn = m.rows.f32, a = ws.ffA.f32, b = ws.ffB.f32
        let cnt = m.counts[e], first = m.starts[e], ff = ex.intermediate
        for j in 0..<cnt {
            let row = Int(m.order[first + j]) / k
            (rowsIn + j * h).update(from: xn + row * h, count: h)
        }
        let out = m.out.f32 + first * h
        if let gu = ex.gateUp {
            // gpt-oss's hub layout: [rows, 2 ff] interleaved into ffA, as many rows as it holds at a time
            let per = max(1, ws.ffA.count / (2 * ff))
            var r0 = 0
            while r0 < cnt {
                let n = min(per, cnt - r0)
                gu.apply(rowsIn + r0 * h, rows: n, a, scratch: conv)
                if let bias = biases?.gateUp { addRow(bias, e, a, rows: n, width: 2 * ff) }
                for i in 0..<(n * ff) { b[i] = activate(a[2 * i], a[2 * i + 1]) }
                ex.down.apply(b, rows: n, out + r0 * h, scratch: conv)
                r0 += n
            }
        } else {
            WeightMatrix.applyGroup(rowsIn, rows: cnt, (ex.gate!, a), (ex.up!, b), scratch: conv)
            if let bs = biases { addRow(bs.gate!, e, a, rows: cnt, width: ff); addRow(bs.up!, e, b, rows: cnt, width: ff) }
            if activation == .swiglu {
                Ops.swiglu(a, b, count: cnt * ff)
            } else {
                for i in 0..<(cnt * ff) { a[i] = activate(a[i], b[i]) }
            }
            ex.down.apply(a, rows: cnt, out, scratch: conv)
        }
        if let bias = biases?.down { addRow(bias, e, out, rows: cnt, width: h) }
    }

    /// Row `e` of the stacked biases `t` added to each of `rows` rows of `width` at `y`.
    private func addRow(_ t: Tensor, _ e: Int, _ y: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        let src = t.f32 + e * width
        for r in 0..<rows { let dst = y + r * width; for c in 0..<width { dst[c] += src[c] } }
    }

    /// The gated activation of one (gate, up) pair: gpt-oss's clamped SwiGLU as transformers
    /// computes it (the sigmoid as 1 / (1 + e^-x)); SwiGLU elsewhere (Ops.swiglu runs that one).
    @inline(__always)
    private func activate(_ g: Float, _ u: Float) -> Float {
        switch activation {
        case .swiglu: return g / (1 + expf(-g)) * u
        case let .clampedSwiGLU(alpha, limit):
            let gc = min(g, limit), uc = min(max(u, -limit), limit)
            return gc * (1 / (1 + expf(-gc * alpha))) * (uc + 1)
        }
    }

    private func run(_ e: Int, _ w: ExpertWeights, _ xn: UnsafePointer<Float>, _ ws: Workspace) { run(e, expert(w), xn, ws) }
    private func expert(_ w: ExpertWeights) -> Expert { Expert(gate: WeightMatrix(w.gate), up: WeightMatrix(w.up), down: WeightMatrix(w.down)) }
}

/// Times each of a layer's experts was chosen, and the rows routed (a calibration's routing
/// histogram: `RoutingCounted`). Counted by the pass that routes (not by a process serving another's
/// expert requests).
final class RoutingTally: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [Int]
    private var rows = 0
    init(experts: Int) { counts = [Int](repeating: 0, count: experts) }
    func add(_ c: [Int], rows r: Int) {
        lock.lock(); defer { lock.unlock() }
        for e in counts.indices { counts[e] += c[e] }
        rows += r
    }
    var snapshot: (rows: Int, counts: [Int]) { lock.lock(); defer { lock.unlock() }; return (rows, counts) }
    func reset() { lock.lock(); defer { lock.unlock() }; counts = counts.map { _ in 0 }; rows = 0 }
}

/// A model whose layers route tokens to experts, and how often each expert has been chosen.
public protocol RoutingCounted: AnyObject {
    /// Per layer of the model: times each expert was chosen since load (or `resetRoutingCounts`);
    /// empty for a layer without experts. `tokens`: the rows routed by one sparse layer.
    var routingCounts: (tokens: Int, layers: [[Int]]) { get }
    func resetRoutingCounts()
}

/// The mixture's buffers of one forward pass (in `Workspace`), sized for `maxRows` rows.
final class MoEBuffers {
    /// [maxRows, experts] router logits, then probabilities
    let router: Tensor
    /// [maxRows, hidden] the rows routed to one expert, gathered; [maxRows * k, hidden] every
    /// expert's output rows, at their places in `order`
    let rows: Tensor, out: Tensor
    /// [maxRows * k] each row's chosen experts and their weights; the slots grouped by expert
    var choice: [Int32], weight: [Float], order: [Int32]
    /// [experts] rows per expert and where each expert's slots start in `order`
    var counts: [Int], starts: [Int]
    /// the experts chosen in this pass, the weights of a pinned group and which of them ran (expert cache)
    var active: [Int], pinned: [ExpertWeights], done: [Bool]
    /// expert shards: one message's experts, their row counts and rows, and the processes sent to
    var ids: [Int32] = [], idCounts: [Int32] = [], rowIDs: [Int32] = [], sentTo: [Int] = []
    /// the experts waiting to run together (`MoELayer.flush`) and the batch of their matrices
    var queued: [Int], queuedExperts: [Expert]
    let batch: Kernels.LinearBatch

    init(maxRows: Int, hidden: Int, shape s: MoEShape) {
        router = Tensor(zeros: [maxRows, s.experts])
        // at least one token's experts' rows, so a decode step's experts can run together
        rows = Tensor(zeros: [max(maxRows, s.expertsPerToken), hidden])
        out = Tensor(zeros: [maxRows * s.expertsPerToken, hidden])
        choice = [Int32](repeating: 0, count: maxRows * s.expertsPerToken)
        weight = [Float](repeating: 0, count: maxRows * s.expertsPerToken)
        order = [Int32](repeating: 0, count: maxRows * s.expertsPerToken)
        counts = [Int](repeating: 0, count: s.experts)
        starts = [Int](repeating: 0, count: s.experts)
        active = []
        active.reserveCapacity(s.experts)
        pinned = []
        pinned.reserveCapacity(s.experts)
        done = [Bool](repeating: false, count: s.experts)
        ids.reserveCapacity(s.experts); idCounts.reserveCapacity(s.experts)
        rowIDs.reserveCapacity(maxRows * s.expertsPerToken); sentTo.reserveCapacity(64)
        queued = []; queued.reserveCapacity(s.experts)
        queuedExperts = []; queuedExperts.reserveCapacity(s.experts)
        batch = Kernels.LinearBatch(capacity: 2 * s.experts)
    }

    static func bytes(maxRows: Int, hidden: Int, shape s: MoEShape) -> Int {
        4 * (maxRows * (s.experts + s.expertsPerToken * hidden) + max(maxRows, s.expertsPerToken) * hidden)
            + maxRows * s.expertsPerToken * 12 + 17 * s.experts + 96 * s.experts  // + the queue and the batch's arguments
    }

    private var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    /// A pseudo-random number in [0, 1) (benchmark routing).
    func random() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1.0p-53
    }
    /// The Zipf law's cumulative shares over ranks 1...n, made once per (n, exponent).
    var zipfCDF: [Double] = []

    /// Whether row `i` already chose expert `e` among its first `j` choices.
    @inline(__always)
    func chosen(_ i: Int, upTo j: Int, _ e: Int, k: Int) -> Bool {
        for t in 0..<j where choice[i * k + t] == Int32(e) { return true }
        return false
    }
}

extension Tensor {
    /// Expert `e`'s matrix of a stacked `[experts, rows, columns]` tensor: a view (each expert's
    /// rows lie together, whole quantization blocks).
    func expert(_ e: Int) -> Tensor {
        let rows = shape[1], cols = shape[2]
        return reshaped([shape[0] * rows, cols]).slice((e * rows)..<((e + 1) * rows))
    }
}

/// How a benchmark routes tokens instead of the router (`STRATA_MOE_ROUTING`): `uniform` (each of
/// a layer's experts equally likely: a cache's worst case, and what a model trained for balance
/// approaches), or `zipf:S` (the expert of rank r, in an order of the experts that differs by
/// layer, chosen with probability proportional to r^-S: the reuse real models show, controlled).
/// A random-weight model's own router reuses a few experts (routing entropy ~0.55 of uniform on a
/// Qwen3-30B-A3B shape), which would flatter a cache. The model's outputs are then not the model's.
public enum MoERouting: Equatable, Sendable {
    case model, uniform, zipf(Double)

    /// `STRATA_MOE_ROUTING`, read once; a value it cannot read is said on stderr (the run then
    /// routes by the model's router), not passed over in silence.
    public static let fromEnvironment: MoERouting = {
        let v = ProcessInfo.processInfo.environment["STRATA_MOE_ROUTING"]
        let r = parse(v)
        if let v, r == .model, v != "model" {
            FileHandle.standardError.write(Data("warning: STRATA_MOE_ROUTING='\(v)' is not uniform, zipf:S (S > 0) or model; the model's router routes\n".utf8))
        }
        return r
    }()

    public static func parse(_ s: String?) -> MoERouting {
        guard let s else { return .model }
        if s == "uniform" { return .uniform }
        if s.hasPrefix("zipf:"), let x = Double(s.dropFirst(5)), x > 0, x.isFinite { return .zipf(x) }
        return .model
    }

    /// One expert of `n` for a row of `layer`.
    func draw(_ n: Int, layer: Int, _ m: MoEBuffers) -> Int {
        switch self {
        case .model, .uniform: return min(n - 1, Int(m.random() * Double(n)))
        case let .zipf(x):
            if m.zipfCDF.count != n {
                var c = [Double](repeating: 0, count: n), acc = 0.0
                for r in 0..<n { acc += pow(Double(r + 1), -x); c[r] = acc }
                m.zipfCDF = c.map { $0 / acc }
            }
            let u = m.random()
            var lo = 0, hi = n - 1
            while lo < hi { let mid = (lo + hi) / 2; if m.zipfCDF[mid] < u { lo = mid + 1 } else { hi = mid } }
            return MoERouting.expert(rank: lo, n: n, layer: layer)
        }
    }

    /// The expert of popularity rank `rank` (0-based) in `layer`: a bijection of 0..<n that
    /// differs by layer (rank times a multiplier prime to n, plus an offset).
    public static func expert(rank: Int, n: Int, layer: Int) -> Int {
        var a = 37
        while gcd(a, n) != 1 { a += 2 }
        return (rank * a + layer * 11) % n
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}

/// A model whose routed experts other processes send rows through (expert shards, StrataMPI).
public protocol ExpertServing: AnyObject {
    /// Most rows one request carries (a pass's rows times the experts per token).
    var maxExpertRows: Int { get }
    /// Makes the buffers requests run in now (at load), not at the first request.
    func prepareExpertService()
    /// Runs `experts[i]` of `layer` over `counts[i]` rows each (`rows`: `[sum(counts), hidden]`)
    /// into `out` (the same shape), as a pass here would. Throws for a layer without experts or
    /// an expert out of range.
    func serveExperts(layer: Int, experts: UnsafeBufferPointer<Int32>, counts: UnsafeBufferPointer<Int32>, rows: UnsafePointer<Float>,
                      out: UnsafeMutablePointer<Float>) throws
}
