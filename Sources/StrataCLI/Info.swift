import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the machine and BLAS Strata sees, as JSON.")
    @OptionGroup var threads: ThreadOption
    @Flag(help: "Also measure memory read bandwidth and sgemm FLOP/s (a few seconds).") var measure = false
    func run() throws {
        try threads.apply()
        if measure {
            let bw = Measure.memoryReadBandwidth()
            let g = Measure.gemmFlops(m: 512, n: 5632, k: 2048)
            let gv = Measure.gemmFlops(m: 1, n: 5632, k: 2048, repeats: 20)
            eprint(String(format: "memory read bandwidth: %.1f GB/s; sgemm [512,2048]x[5632,2048]^T: %.1f GFLOP/s; gemv: %.1f GFLOP/s", bw / 1e9, g / 1e9, gv / 1e9))
            for m in [2, 4, 8, 16, 32, 64, 128] {
                let f = Measure.gemmFlops(m: m, n: 5632, k: 2048, repeats: 10)
                eprint(String(format: "  linear M=%d: %.1f GFLOP/s = weights read at %.1f GB/s", m, f / 1e9, f / Double(2 * m) * 4 / 1e9))
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(MachineInfo.current()), as: UTF8.self))
    }
}
