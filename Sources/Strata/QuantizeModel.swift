import Foundation
import StrataFormats
import StrataModels
import StrataTensor

/// `strata quantize`: a safetensors model folder to a GGUF file of ggml's quantized blocks,
/// written as llama.cpp's converter and llama-quantize write it (tensor names, metadata keys,
/// Llama's Q/K permutation, the tokenizer as `tokenizer.ggml.*`, the per-tensor type choices of
/// llama-quantize's schemes), so llama.cpp and Strata both read it.
public enum QuantizeModel {
    /// The schemes, named as llama-quantize names them.
    public enum Scheme: String, CaseIterable, Sendable {
        case q8_0, q4_0, q4_k_m, q6_k, q4_1, q5_0, q5_k_m
        /// llama-quantize's MXFP4_MOE: a mixture's stacked experts MXFP4, the other matrices Q8_0
        case mxfp4_moe

        /// llama.cpp's `general.file_type` (llama_ftype).
        var fileType: UInt32 {
            switch self {
            case .q8_0: return 7
            case .q4_0: return 2
            case .q4_k_m: return 15
            case .q6_k: return 18
            case .q4_1: return 3
            case .q5_0: return 8
            case .q5_k_m: return 17
            case .mxfp4_moe: return 38
            }
        }

        /// The type most tensors get.
        var base: DType {
            switch self {
            case .q8_0: return .q8_0
            case .q4_0: return .q4_0
            case .q4_k_m: return .q4_k
            case .q6_k: return .q6_k
            case .q4_1: return .q4_1
            case .q5_0: return .q5_0
            case .q5_k_m: return .q5_k
            case .mxfp4_moe: return .q8_0
            }
        }
    }

    /// The architectures `run` writes.
    public static let architectures = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]

    public struct Summary: Sendable {
        public var tensors: Int
        public var bytes: Int
        /// bytes per type written
        public var byType: [DType: Int]
    }

    /// llama-quantize's rule for the layers that keep more bits in Q4_K_M (attn_v, ffn_down): the
    /// first and last eighth, and every third layer between.
    static func useMoreBits(_ layer: Int, _ layers: Int) -> Bool {
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
    }

    /// The type of one tensor under `scheme`: 1-D tensors stay f32; rows that are not whole blocks
    /// fall back to Q8_0 (or f16 when not whole 32s).
    static func type(gguf name: String, shape: [Int], scheme: Scheme, layers: Int) -> DType {
        // vectors, biases (gpt-oss's experts' are [experts, width]) and a mixture's router stay f32
        // (llama-quantize quantizes only `.weight` tensors, and leaves ffn_gate_inp alone)
        guard shape.count >= 2, !name.hasSuffix("ffn_gate_inp.weight"), !name.hasSuffix(".bias") else { return .f32 }
        var t = scheme.base
        switch scheme {
        case .q8_0, .q6_k: break
        case .mxfp4_moe: if shape.count == 3 { t = .mxfp4 }
        case .q4_0, .q4_1, .q5_0: if name == "output.weight" { t = .q6_k }
        case .q4_k_m, .q5_k_m:
            let layer = name.hasPrefix("blk.") ? Int(name.split(separator: ".")[1]) ?? 0 : 0
            if name == "output.weight" { t = .q6_k }
            if (name.hasSuffix("attn_v.weight") || name.hasSuffix("ffn_down.weight") || name.hasSuffix("ffn_down_exps.weight"))
                && useMoreBits(layer, layers) { t = .q6_k }
        }
        let k = shape.last!
        if k % t.blockElements != 0 { t = k % 32 == 0 ? .q8_0 : .f16 }
        return t
    }

    /// Writes `folder` quantized by `scheme` to `out`; `progress(done, total)` in bytes of weights read.
    /// `shouldStop` is checked between chunks: true stops with `Interrupted` and removes the
    /// partial file (the CLI wires Ctrl-C there).
    public static func run(folder: ModelFolder, scheme: Scheme, out: String, shouldStop: () -> Bool = { false },
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> Summary {
        let arch = folder.architecture
        let ckpt = try folder.requireCheckpoint()
        guard folder.gguf == nil else {
            throw ConfigError.invalidValue(file: folder.directory, field: "--model", reason: "already a GGUF file; quantize reads a safetensors folder")
        }
        guard let export = try arch.ggufExport(config: folder.config) else {
            throw ConfigError.unsupportedArchitecture(file: folder.config.path, architecture: arch.name, supported: QuantizeModel.architectures)
        }
        let layers = folder.spec.layers
        // tensors in layer order, llama.cpp's names
        var plan: [(hf: String, gguf: String, shape: [Int], type: DType)] = []
        for name in ckpt.tensorNames {
            guard let e = ckpt.entry(name), e.dtype != nil else { continue }
            guard let g = arch.ggufName(hf: name) else {
                throw SafetensorsError.invalidIndex(file: folder.directory, reason: "tensor '\(name)' has no llama.cpp name for \(arch.name)")
            }
            plan.append((name, g, e.shape, type(gguf: g, shape: e.shape, scheme: scheme, layers: layers)))
        }
        func order(_ g: String) -> (Int, String) {
            if g.hasPrefix("blk."), let l = Int(g.split(separator: ".")[1]) { return (l + 1, g) }
            return (g == "token_embd.weight" ? 0 : layers + 1, g)
        }
        plan.sort { order($0.gguf) < order($1.gguf) }
        var meta: [(String, GGUFValue)] = [
            ("general.architecture", .string(export.architecture)),
            ("general.name", .string((folder.directory as NSString).lastPathComponent)),
            ("general.file_type", .u32(scheme.fileType)), ("general.quantization_version", .u32(2)),
        ]
        meta += export.metadata
        let (bos, eos) = folder.generationTokens
        meta += try GGUFTokenizerExport.metadata(directory: folder.directory, bos: bos, eos: eos, vocabSize: folder.spec.vocabSize)
        let specs = plan.map { GGUFWriter.Spec(name: $0.gguf, dtype: $0.type, shape: $0.shape) }
            + export.extraTensors.map { GGUFWriter.Spec(name: $0.0, dtype: .f32, shape: [$0.1.count]) }
        let writer = try GGUFWriter(path: out, metadata: meta, tensors: specs)
        Interrupt.onForcedExit { FileIO.remove(out + ".partial") }
        var summary = Summary(tensors: specs.count, bytes: 0, byType: [:])
        do {
            let total = plan.reduce(0) { $0 + (ckpt.entry($1.hf)?.byteCount ?? 0) }
            var done = 0
            for p in plan {
                let src = try ckpt.tensor(p.hf)
                let rows = p.shape.count == 2 ? p.shape[0] : 1, k = p.shape.count == 2 ? p.shape[1] : p.shape.reduce(1, *)
                var perm: [Int]? = nil
                if let pq = export.permuteQK {
                    if p.gguf.hasSuffix("attn_q.weight") { perm = GGUFExport.permutedRows(rows: rows, heads: pq.heads) }
                    if p.gguf.hasSuffix("attn_k.weight") { perm = GGUFExport.permutedRows(rows: rows, heads: pq.kvHeads) }
                }
                let band = max(1, min(rows, (16 << 20) / max(1, k)))
                let f32 = Tensor(zeros: [band, k])
                let outRow = p.type.bytes(elements: k)
                let qbuf = TensorStorage(byteCount: band * outRow)
                var r0 = 0
                while r0 < rows {
                    if shouldStop() { throw Interrupted() }
                    let n = min(band, rows - r0)
                    for i in 0..<n {
                        let srcRow = perm?[r0 + i] ?? (r0 + i)
                        HalfConversion.toF32(src.rawPointer + srcRow * src.dtype.bytes(elements: k), dtype: src.dtype, f32.f32 + i * k, count: k)
                    }
                    if p.type.isQuantized {
                        // ggml's formulas turn a NaN or infinity into garbage blocks (or, in
                        // Swift, a trap converting it to an integer): refuse the tensor by name
                        let xs0 = f32.f32
                        for j in 0..<(n * k) where !xs0[j].isFinite {
                            throw SafetensorsError.nonFiniteValue(file: ckpt.path(of: p.hf) ?? folder.directory, tensor: p.hf, row: r0 + j / k)
                        }
                        let xs = UncheckedSendable(f32.f32), qs = UncheckedSendable(qbuf.base), t = p.type
                        Threads.parallelFor(n, minChunk: 1) { range in
                            for i in range { Quantizer.quantize(xs.value + i * k, count: k, to: t, into: qs.value + i * outRow) }
                        }
                        try writer.write(qbuf.base, count: n * outRow)
                    } else if p.type == .f16 {
                        HalfConversion.f32ToF16(f32.f32, qbuf.base.assumingMemoryBound(to: UInt16.self), count: n * k)
                        try writer.write(qbuf.base, count: n * outRow)
                    } else {
                        try writer.write(f32.rawPointer, count: n * k * 4)
                    }
                    r0 += n
                    done += n * src.dtype.bytes(elements: k)
                    progress(done, total)
                }
                summary.bytes += rows * outRow
                summary.byType[p.type, default: 0] += rows * outRow
            }
            for extra in export.extraTensors {
                let values = extra.1
                try values.withUnsafeBytes { buf in try writer.write(buf.baseAddress!, count: buf.count) }
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        return summary
    }
}
