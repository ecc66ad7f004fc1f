import Foundation
import StrataFormats
import StrataModels
import StrataTensor

extension Synth {
    /// Writes `preset` directly as a GGUF quantized by `scheme` (llama.cpp's names, metadata and
    /// per-tensor types, a mixture's experts stacked in `ffn_*_exps`), with no full-precision
    /// intermediate: a model of 30B parameters is 120 GB in f32. Each matrix row is one of a pool
    /// of rows per (type, width), each quantized once from uniform values in +-1/sqrt(fan-in) and
    /// picked at random, so the file is written at disk speed with the statistics of real
    /// quantized weights; vectors are ones (norms) or zeros (biases); a router is f32 with its own
    /// random rows.
    /// The file is complete or absent (written to `<path>.partial`, renamed at the end).
    /// `routingSkew` S (a mixture whose router has a bias): expert e of popularity rank r in its
    /// layer (`MoERouting.expert(rank:n:layer:)`, an order that differs by layer) gets the router
    /// bias -S ln(r + 1), so the router's probabilities follow a Zipf law of exponent S times the
    /// random rows' own variation (docs/benchmarks.md measures the hit rates it gives).
    public static func writeGGUF(preset: Preset, scheme: QuantizeModel.Scheme, seed: UInt64, routingSkew: Double? = nil, to path: String,
                                 shouldStop: () -> Bool = { false }, progress: (Int, Int) -> Void = { _, _ in }) throws {
        let arch = preset.architecture
        // the config and tokenizer the metadata is made from, in a scratch folder
        let scratch = NSTemporaryDirectory() + "strata-synth-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let cfgData = try JSONSerialization.data(withJSONObject: preset.config, options: [.sortedKeys])
        try FileIO.writeAtomically((scratch as NSString).appendingPathComponent("tokenizer.json"),
                                   try JSONSerialization.data(withJSONObject: tokenizerJSON(vocab: preset.vocab)))
        let config = ConfigFile(path: scratch + "/config.json", data: cfgData)
        guard let export = try arch.ggufExport(config: config) else {
            throw ConfigError.unsupportedArchitecture(file: preset.name, architecture: arch.name, supported: QuantizeModel.architectures)
        }
        let layers = preset.layers, eos = preset.vocab - 1
        var meta: [(String, GGUFValue)] = [
            ("general.architecture", .string(export.architecture)), ("general.name", .string(preset.name)),
            ("general.file_type", .u32(scheme.fileType)), ("general.quantization_version", .u32(2)),
        ]
        meta += export.metadata
        meta += try GGUFTokenizerExport.metadata(directory: scratch, bos: [eos], eos: [eos], vocabSize: preset.vocab)
        // llama.cpp's tensors: a layer's experts stacked into one [experts, rows, cols] tensor
        let table = arch.tensors, dims = TensorDims(preset.shape)
        var specs: [GGUFWriter.Spec] = []
        for t in arch.synthTensors(preset.shape) {
            let place = table.place(of: t.name)
            if let e = place?.expert {
                let kind = t.name.hasSuffix(".bias") ? "bias" : "weight"
                guard e == 0, let p = place, let l = p.layer,
                      let g = table.ggufName(hf: table.name(p.role, layer: l, expert: nil, kind: kind)) else { continue }
                let shape = [dims.experts] + t.shape
                specs.append(GGUFWriter.Spec(name: g, dtype: QuantizeModel.type(gguf: g, shape: shape, scheme: scheme, layers: layers), shape: shape))
            } else {
                guard let g = table.ggufName(hf: t.name) else {
                    throw ConfigError.invalidValue(file: preset.name, field: "tensors", reason: "\(t.name) has no llama.cpp name")
                }
                specs.append(GGUFWriter.Spec(name: g, dtype: QuantizeModel.type(gguf: g, shape: t.shape, scheme: scheme, layers: layers), shape: t.shape))
            }
        }
        func order(_ g: String) -> (Int, String) {
            if g.hasPrefix("blk."), let l = Int(g.split(separator: ".")[1]) { return (l + 1, g) }
            return (g == "token_embd.weight" ? 0 : layers + 1, g)
        }
        specs.sort { order($0.name) < order($1.name) }
        if let skew = routingSkew {
            guard skew >= 0, skew.isFinite else {
                throw ConfigError.invalidValue(file: preset.name, field: "--routing-skew", reason: "must be >= 0, got \(skew)")
            }
            guard specs.contains(where: { $0.name.hasSuffix("ffn_gate_inp.bias") }) else {
                throw ConfigError.invalidValue(file: preset.name, field: "--routing-skew",
                                               reason: "\(arch.name)'s router has no bias to skew (gpt-oss's has); a benchmark can route by a Zipf law with STRATA_MOE_ROUTING=zipf:S")
            }
        }
        let experts = dims.experts
        specs += export.extraTensors.map { GGUFWriter.Spec(name: $0.0, dtype: .f32, shape: [$0.1.count]) }
        let writer = try GGUFWriter(path: path, metadata: meta, tensors: specs)
        Interrupt.onForcedExit { FileIO.remove(path + ".partial") }
        do {
            var rng = Xoshiro256(seed: seed)
            var pools: [String: (rowBytes: Int, rows: [UInt8])] = [:]
            let poolRows = 64
            func pool(_ t: DType, _ k: Int) -> (rowBytes: Int, rows: [UInt8]) {
                let key = "\(t.rawValue)/\(k)"
                if let p = pools[key] { return p }
                let rowBytes = t.bytes(elements: k), a = Float(1 / Double(k).squareRoot())
                var rows = [UInt8](repeating: 0, count: poolRows * rowBytes)
                var x = [Float](repeating: 0, count: k)
                var g = Xoshiro256(seed: seed &+ UInt64(k) &* 31 &+ UInt64(t.blockBytes))
                rows.withUnsafeMutableBytes { out in
                    for r in 0..<poolRows {
                        for j in 0..<k { x[j] = a * (Float(g.next() >> 40) * 0x1.0p-23 - 1) }
                        let dst = out.baseAddress! + r * rowBytes
                        switch t {
                        case .f32: x.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: rowBytes) }
                        case .f16: HalfConversion.f32ToF16(x, dst.assumingMemoryBound(to: UInt16.self), count: k)
                        case .bf16: HalfConversion.f32ToBF16(x, dst.assumingMemoryBound(to: UInt16.self), count: k)
                        default: Quantizer.quantize(x, count: k, to: t, into: dst)
                        }
                    }
                }
                pools[key] = (rowBytes, rows)
                return pools[key]!
            }
            let total = specs.reduce(0) { $0 + $1.byteCount }
            var done = 0
            let chunk = 8 << 20
            var buf = [UInt8](repeating: 0, count: chunk)
            for s in specs {
                if let extra = export.extraTensors.first(where: { $0.0 == s.name }) {
                    try extra.1.withUnsafeBytes { try writer.write($0.baseAddress!, count: $0.count) }
                    done += s.byteCount
                    continue
                }
                if let skew = routingSkew, s.name.hasSuffix("ffn_gate_inp.bias"), let layer = Int(s.name.split(separator: ".")[1]) {
                    var b = [Float](repeating: 0, count: s.shape[0])
                    for r in 0..<experts { b[MoERouting.expert(rank: r, n: experts, layer: layer)] = Float(-skew * log(Double(r + 1))) }
                    try b.withUnsafeBytes { try writer.write($0.baseAddress!, count: $0.count) }
                    done += s.byteCount
                    continue
                }
                if s.shape.count == 1 {
                    // norms (and gpt-oss's sinks): ones, what an untrained RMSNorm holds; biases
                    // zeros (ones on every o projection would add one direction to every token's
                    // residual, and the routers would send every token to the same experts)
                    let ones = [Float](repeating: s.name.hasSuffix(".bias") ? 0 : 1, count: s.shape[0])
                    try ones.withUnsafeBytes { try writer.write($0.baseAddress!, count: $0.count) }
                    done += s.byteCount
                    continue
                }
                let k = s.shape.last!, rows = s.byteCount / s.dtype.bytes(elements: k)
                let isRouter = s.name.hasSuffix("ffn_gate_inp.weight")
                let p = isRouter ? nil : pool(s.dtype, k)
                let rowBytes = s.dtype.bytes(elements: k)
                let perChunk = max(1, chunk / rowBytes)
                var r = 0
                while r < rows {
                    if shouldStop() { throw Interrupted() }
                    let n = min(perChunk, rows - r)
                    if buf.count < n * rowBytes { buf = [UInt8](repeating: 0, count: n * rowBytes) }
                    try buf.withUnsafeMutableBytes { out in
                        if let p {
                            p.rows.withUnsafeBytes { src in
                                for i in 0..<n {
                                    let pick = Int(rng.next() % UInt64(poolRows))
                                    (out.baseAddress! + i * rowBytes).copyMemory(from: src.baseAddress! + pick * rowBytes, byteCount: rowBytes)
                                }
                            }
                        } else {
                            // a router: rows of its own (f32), so experts differ in what they are chosen for
                            let a = Float(1 / Double(k).squareRoot())
                            let f = out.baseAddress!.assumingMemoryBound(to: Float.self)
                            for j in 0..<(n * k) { f[j] = a * (Float(rng.next() >> 40) * 0x1.0p-23 - 1) }
                        }
                        try writer.write(out.baseAddress!, count: n * rowBytes)
                    }
                    r += n
                    done += n * rowBytes
                    progress(done, total)
                }
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
    }
}
