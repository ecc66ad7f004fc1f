import Foundation
import Synchronization
import StrataFormats
import StrataMemory
import StrataModels
import StrataPlanner
import StrataTensor

/// Measures the machine for the planner (`strata profile`) and caches it.
public enum Profiler {
    /// `STRATA_PROFILE` when set (the bench suite points it at its own results folder, so a
    /// suite run on a loaded machine does not rewrite the user's profile), else
    /// `~/.cache/strata/profile.json`.
    public static var cachePath: String {
        if let p = ProcessInfo.processInfo.environment["STRATA_PROFILE"], !p.isEmpty { return p }
        return userCachePath
    }

    public static var userCachePath: String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? "/tmp"
        return home + "/.cache/strata/profile.json"
    }

    /// The cached profile, or nil.
    public static func cached() -> HardwareProfile? {
        guard let d = FileManager.default.contents(atPath: cachePath) else { return nil }
        return try? JSONDecoder().decode(HardwareProfile.self, from: d)
    }

    /// The profile's compute figures: a layer's forward pass at M = 1 ... 512 rows less its
    /// element-wise work, as samples of the layer's parameters, and the element-wise seconds per
    /// row. About 16 s on 2 cores (a `strata profile --refresh` here, 2026-11-26). `make bench`
    /// re-measures them before each configuration after the first.
    /// `overheadPerLayer`: what a one-row pass spends per layer beyond its element-wise work and
    /// its GEMVs (the pass at M = 1 less the same matrices multiplied alone); it is taken out of
    /// every sample and charged per layer and pass by the cost model.
    public static func computeSamples(log: (String) -> Void = { _ in }) throws
        -> (samples: [HardwareProfile.GemmSample], elementwisePerRow: Double, overheadPerLayer: Double) {
        var samples: [HardwareProfile.GemmSample] = []
        // the engine's own forward pass over layers of this shape (weights from memory), less
        // the element-wise work (measured alone; the cost model charges it per row and scales it
        // with the hidden size). The pass holds what a layer's GEMMs cost between the
        // element-wise kernels, with the threads' hand-offs, as the engine runs them: in three
        // runs here 0.84-1.26x the same GEMMs timed back to back. M = 1 is the decode GEMV.
        // Stored as samples of the layer's parameters (21504 x 2048).
        let ew = Measure.layerElementwiseSecondsPerRow()
        log(String(format: "element-wise work of a layer outside the GEMMs: %.1f us per row", ew * 1e6))
        let ms = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
        let (ts, beyond) = try Measure.layerPass(rows: ms)
        let overhead = max(0, (beyond ?? 0) - ew)
        log(String(format: "a one-row layer pass beyond its GEMVs and element-wise work: %.1f us per layer", overhead * 1e6))
        for (m, t) in zip(ms, ts) {
            let sec = max(t - ew * Double(m) - overhead, t / 2)
            samples.append(.init(m: m, n: 21504, k: 2048, seconds: sec))
            if m == 1 {
                log(String(format: "layer pass M=1: %.2f ms; its GEMVs at %.1f GB/s of f32 weights", t * 1e3, 4 * 21504 * 2048 / sec / 1e9))
            } else {
                log(String(format: "layer pass M=%d: %.2f ms; its GEMMs at %.1f GFLOP/s", m, t * 1e3, 2 * Double(m) * 21504 * 2048 / sec / 1e9))
            }
        }
        return (samples, ew, overhead)
    }

    /// Measures a layer's forward pass for M = 1 ... 512 rows and memory read bandwidth, each
    /// `rounds` times keeping the best (a slow spell of a shared machine lowers one round, not
    /// the profile); cold sequential disk read (O_DIRECT) and write (fsync'd) bandwidth of a
    /// scratch file in `diskPath`, contention and the 16-bit widening rates. Records the machine
    /// (CPU, cores, memory, OpenBLAS core, kernel path) and the load other processes put on it
    /// meanwhile, which `HardwareProfile.warnings` checks. About 20 s per round plus 10 s on 2 cores.
    public static func measure(diskPath: String, scratchBytes: Int = 1 << 30, rounds: Int = 2, log: (String) -> Void = { _ in }) throws -> HardwareProfile {
        // the process's own runtime overhead is read (once per process) before the measurements'
        // buffers raise its resident size: else the first plan on a new machine, which profiles
        // it first, counted ~220 MB of freed measurement buffers as runtime and refused budgets
        // the second plan accepted
        _ = PlacementRule.runtimeOverhead()
        let cpuStart = Measure.CPUTimes.now()
        var samples: [HardwareProfile.GemmSample] = [], ew = 0.0, ohs: [Double] = [], bw = 0.0, memRounds: [Double] = []
        for round in 1...max(1, rounds) {
            if rounds > 1 { log("round \(round) of \(rounds)") }
            let (s, e, o) = try computeSamples(log: log)
            if samples.isEmpty { (samples, ew, ohs) = (s, e, [o]) } else {
                for i in samples.indices { samples[i].seconds = min(samples[i].seconds, s[i].seconds) }
                ew = min(ew, e)
                ohs.append(o)
            }
            // twice a round: this class of machine's memory moves by a third within minutes
            for _ in 0..<2 {
                let b = Measure.memoryReadBandwidth()
                log(String(format: "memory read: %.1f GB/s", b / 1e9))
                bw = max(bw, b)
                memRounds.append(b)
            }
        }
        let scratch = (diskPath as NSString).appendingPathComponent(".strata-profile-\(FileIO.processID)")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (rd, wr) = try diskBandwidth(path: scratch, bytes: scratchBytes)
        let scattered = try scatteredReadBandwidth(path: scratch)
        log(String(format: "disk (%@): read %.0f MB/s cold, write %.0f MB/s; scattered 8 MiB reads, 4 in flight: %.0f MB/s",
                   diskPath as NSString, rd / 1e6, wr / 1e6, scattered / 1e6))
        let (cf, rf) = try contention(path: scratch)
        log(String(format: "contention: GEMMs at %.2f of their speed while reading, reads at %.2f of theirs while computing", cf, rf))
        let info = MachineInfo.current()
        var p = HardwareProfile(cpu: info.cpu, cores: info.cores, threads: Threads.count, memoryBytes: info.memoryBytes, gemm: samples,
                                memoryReadBytesPerSecond: bw, diskReadBytesPerSecond: rd, diskWriteBytesPerSecond: wr,
                                diskPath: diskPath, measuredAt: ISO8601DateFormatter().string(from: Date()))
        p.diskScatteredReadBytesPerSecond = scattered
        p.elementwiseSecondsPerRow = ew
        p.memoryReadRounds = memRounds
        p.passOverheadPerLayer = median(ohs)  // a difference of two timings: the rounds' median, not their best
        p.computeFactorWhileReading = cf
        p.readFactorWhileComputing = rf
        p.widenBF16PerSecond = Measure.widenElementsPerSecond(dtype: .bf16)
        p.widenF16PerSecond = Measure.widenElementsPerSecond(dtype: .f16)
        log(String(format: "16-bit weights widened to f32: bf16 %.2f, f16 %.2f G elements/s", p.widenBF16PerSecond! / 1e9, p.widenF16PerSecond! / 1e9))
        if Kernels.bf16GEMMSupported {
            // the same layer pass with bf16 weights in the bf16-product prefill mode, at prefill
            // row counts (the mode of quantized weights in q8 and of --prefill16 bf16)
            let saved = Kernels.prefill16
            Kernels.prefill16 = .bf16
            defer { Kernels.prefill16 = saved }
            let ms = [64, 256, 512]
            let ts = try Measure.layerPassSeconds(rows: ms, repeats: 3, dtype: .bf16)
            // less the element-wise work and the pass overhead, as the f32 samples (the cost model adds both)
            let oh = p.passOverheadPerLayer ?? 0
            p.bf16Gemm = zip(ms, ts).map { m, t in .init(m: m, n: 21504, k: 2048, seconds: max(t - ew * Double(m) - oh, t / 2)) }
            for s in p.bf16Gemm! {
                log(String(format: "layer pass M=%d, bf16 products: %.2f ms; its GEMMs at %.1f GFLOP/s", s.m, s.seconds * 1e3, 2 * Double(s.m) * 21504 * 2048 / s.seconds / 1e9))
            }
        }
        var dq: [String: Double] = [:]
        for t in DType.quantized { dq[t.rawValue] = Measure.dequantElementsPerSecond(dtype: t) }
        p.dequantPerSecond = dq
        // the one-row kernels in both activation modes (the run's mode picks one; 8-bit only
        // where a SIMD kernel exists, elsewhere it is a slow portable definition no run uses)
        var exact: [String: Double] = [:]
        for t in DType.quantized { exact[t.rawValue] = Measure.oneRowBytesPerSecond(dtype: t, activations: .f32) }
        p.oneRowExactBytesPerSecond = exact
        log("one-row decode kernel, f32 activations: " + DType.quantized.map { String(format: "%@ %.1f", $0.rawValue as NSString, exact[$0.rawValue]! / 1e9) }.joined(separator: ", ") + " GB/s of weights")
        if Kernels.q8FastSupported {
            var one: [String: Double] = [:]
            for t in DType.quantized { one[t.rawValue] = Measure.oneRowBytesPerSecond(dtype: t, activations: .q8) }
            p.oneRowBytesPerSecond = one
            log("one-row decode kernel, 8-bit activations: " + DType.quantized.map { String(format: "%@ %.1f", $0.rawValue as NSString, one[$0.rawValue]! / 1e9) }.joined(separator: ", ") + " GB/s of weights")
        }
        log("quantized weights dequantized: " + DType.quantized.map { String(format: "%@ %.2f", $0.rawValue as NSString, dq[$0.rawValue]! / 1e9) }.joined(separator: ", ") + " G elements/s")
        p.openBLASCore = info.openBLASCore
        p.kernelPath = Kernels.path.description
        p.rounds = max(1, rounds)
        if let a = cpuStart, let b = Measure.CPUTimes.now() {
            p.otherLoad = b.otherLoad(since: a)
            log(String(format: "other processes used %.0f%% of the CPU meanwhile", p.otherLoad! * 100))
        }
        for w in p.warnings(machine: info.profileMachine, now: Date()) { log("warning: " + w) }
        return p
    }

    /// GEMMs over a layer (64 rows) and O_DIRECT reads of `path` (a file on the disk that will
    /// stream), first each alone, then both at once (a reader thread beside the GEMMs), each
    /// over about a second. Returns (GEMM speed together / alone, read speed together / alone),
    /// each clamped to 0.05 ... 1. On this VM the guest kernel's I/O path runs on the cores that
    /// compute, so each slows the other.
    public static func contention(path: String, rows: Int = 64, readChunk: Int = 64 << 20) throws -> (compute: Double, read: Double) {
        let gemmAlone = Measure.layerGemmSeconds(rows: rows, repeats: 15)
        let size = try FileIO.size(path: path)
        let readAlone = try fileReadBandwidth(path: path, bytes: size, readChunk: readChunk)
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var stop = false, bytes = 0, seconds = 0.0, error: Error?
        }
        let shared = Shared()
        let started = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        let reader = Thread {
            defer { finished.signal() }
            do {
                let fd = try FileIO.openReadDirect(path) ?? FileIO.openRead(path)
                defer { FileIO.closeFile(fd) }
                let buf = TensorStorage(byteCount: readChunk, alignment: 4096, hugePages: true)
                started.signal()
                var off = 0
                while true {
                    shared.lock.lock(); let stop = shared.stop; shared.lock.unlock()
                    if stop { break }
                    let n = min(readChunk, (size - off) / 4096 * 4096)
                    let t0 = now()
                    try FileIO.preadAligned(fd: fd, path: path, into: buf.base, count: n, offset: off, fileSize: size)
                    FileIO.dropCache(fd: fd, offset: off, count: n)
                    shared.lock.lock(); shared.bytes += n; shared.seconds += now() - t0; shared.lock.unlock()
                    off += n
                    if off + 4096 > size { off = 0 }
                }
            } catch {
                shared.lock.lock(); shared.error = error; shared.lock.unlock()
                started.signal()
            }
        }
        reader.start()
        started.wait()
        let gemmTogether = Measure.layerGemmSeconds(rows: rows, repeats: 15)
        shared.lock.lock(); shared.stop = true; shared.lock.unlock()
        finished.wait()
        if let e = shared.error { throw e }
        let readTogether = shared.seconds > 0 ? Double(shared.bytes) / shared.seconds : readAlone
        func clamp(_ x: Double) -> Double { min(1, max(0.05, x)) }
        return (clamp(gemmAlone / gemmTogether), clamp(readTogether / readAlone))
    }

    /// Writes then reads (cold: O_DIRECT, or after dropping its pages) a scratch file. Reads are
    /// `readChunk` bytes each into a huge-page buffer, as the engine reads a streamed layer: on
    /// this VM `dd iflag=direct` of a model file ran at 1.0 GB/s with bs=16M, 1.5-1.6 GB/s with
    /// bs=176M and 512M.
    /// The file stays (the caller removes it).
    public static func diskBandwidth(path: String, bytes: Int, readChunk: Int = 64 << 20) throws -> (read: Double, write: Double) {
        let chunk = 16 << 20
        let buf = TensorStorage(byteCount: chunk, alignment: 4096)
        let rbuf = TensorStorage(byteCount: readChunk, alignment: 4096, hugePages: true)
        for i in stride(from: 0, to: chunk, by: 4096) { buf.base.storeBytes(of: UInt32(i), toByteOffset: i, as: UInt32.self) }
        let fd = try FileIO.createWrite(path)
        var t0 = now()
        var off = 0
        while off < bytes {
            try FileIO.pwrite(fd: fd, path: path, from: buf.base, count: chunk, offset: off)
            off += chunk
        }
        try FileIO.sync(fd: fd, path: path)
        let write = Double(off) / (now() - t0)
        FileIO.dropCache(fd: fd)
        FileIO.closeFile(fd)
        let rfd = try FileIO.openReadDirect(path) ?? FileIO.openRead(path)
        defer { FileIO.closeFile(rfd) }
        t0 = now()
        off = 0
        while off < bytes {
            let n = min(readChunk, bytes - off)
            try FileIO.preadAligned(fd: rfd, path: path, into: rbuf.base, count: n, offset: off, fileSize: bytes)
            off += n
        }
        return (Double(off) / (now() - t0), write)
    }

    /// Read bandwidth of an existing file (a model's safetensors) as streaming sees it: `bytes`
    /// from `offset` in reads of `readChunk` bytes with O_DIRECT into a huge-page buffer, the
    /// file's cached pages dropped first; read `passes` times, the last pass timed. A streamed
    /// model reads the same bytes every forward pass, and on a VM whose host caches the disk a
    /// re-read is faster than the first read (measured here: 1.1 GB/s the first time, 2.2-2.8 GB/s
    /// in the runs after), while a freshly written scratch file reads faster still (2.9-3.1 GB/s).
    /// Reads of `chunk` bytes at scattered 4 KiB-aligned offsets of `path`, `inFlight` at a time
    /// (O_DIRECT where allowed, the pages dropped first): how the expert cache reads the experts a
    /// token misses (a few MB each, several in flight), which a sequential read's rate overstates
    /// (gpt-oss-20b at 7 GiB: 2.2 GB/s against 2.7 sequential on this host's disk).
    public static func scatteredReadBandwidth(path: String, chunk: Int = 8 << 20, inFlight: Int = 4, reads: Int = 48) throws -> Double {
        let size = try FileIO.size(path: path)
        guard size >= 2 * chunk else { return 0 }
        let fd = try FileIO.openReadDirect(path) ?? FileIO.openRead(path)
        defer { FileIO.closeFile(fd) }
        FileIO.dropCache(fd: fd)
        let span = (size - chunk) / 4096
        let bufs = (0..<inFlight).map { _ in TensorStorage(byteCount: chunk, alignment: 4096, hugePages: true) }
        let failed = Atomic<Bool>(false)
        let t0 = now()
        DispatchQueue.concurrentPerform(iterations: inFlight) { w in
            var state = UInt64(0x9E37_79B9_7F4A_7C15) &+ UInt64(w) &* 0x2545_F491_4F6C_DD1D
            for _ in 0..<(reads / inFlight) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let off = Int((state >> 20) % UInt64(span)) * 4096
                do { try FileIO.preadAligned(fd: fd, path: path, into: bufs[w].base, count: chunk, offset: off, fileSize: size) } catch { failed.store(true, ordering: .relaxed) }
            }
        }
        let rate = Double(reads / inFlight * inFlight * chunk) / (now() - t0)
        FileIO.dropCache(fd: fd)
        if failed.load(ordering: .relaxed) { throw FileError.notRegular(path: path) }
        return rate
    }

    public static func fileReadBandwidth(path: String, offset: Int = 0, bytes: Int = 1 << 30, readChunk: Int = 64 << 20, passes: Int = 2) throws -> Double {
        let size = try FileIO.size(path: path)
        let start = min(offset, max(0, size - bytes)) / 4096 * 4096
        let total = min(bytes, size - start) / 4096 * 4096
        guard total > 0 else { return 0 }
        let fd = try FileIO.openReadDirect(path) ?? FileIO.openRead(path)
        defer { FileIO.closeFile(fd) }
        // the file's cached pages dropped first: O_DIRECT reads over cached pages run slowly
        FileIO.dropCache(fd: fd)
        let buf = TensorStorage(byteCount: readChunk, alignment: 4096, hugePages: true)
        var rate = 0.0
        for _ in 0..<max(1, passes) {
            let t0 = now()
            var off = 0
            while off < total {
                let n = min(readChunk, total - off)
                try FileIO.preadAligned(fd: fd, path: path, into: buf.base, count: n, offset: start + off, fileSize: size)
                FileIO.dropCache(fd: fd, offset: start + off, count: n)
                off += n
            }
            rate = Double(total) / (now() - t0)
        }
        return rate
    }

    public static func save(_ p: HardwareProfile) throws {
        try FileManager.default.createDirectory(atPath: (cachePath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(p).write(to: URL(fileURLWithPath: cachePath))
    }
}
