import os,time,threading,statistics,sys
def run(nfiles, prealloc, dur=3.0, rate_per_file=300):
    lat=[]; lock=threading.Lock()
    def worker(i):
        p=f'/work/fsx-{i}.bin'
        fd=os.open(p,os.O_CREAT|os.O_RDWR|os.O_TRUNC)
        if prealloc:
            os.write(fd,b'\0'*(64<<20)); os.fsync(fd); os.lseek(fd,0,0)
        buf=b'x'*4300; pos=0
        t0=time.perf_counter(); k=0
        time.sleep(i/(rate_per_file*nfiles))
        while time.perf_counter()-t0<dur:
            t=time.perf_counter(); os.pwrite(fd,buf,pos); pos+=len(buf); os.fdatasync(fd); d=time.perf_counter()-t
            with lock: lat.append(d)
            k+=1
            nxt=t0+k/rate_per_file
            s=nxt-time.perf_counter()
            if s>0: time.sleep(s)
        os.close(fd); os.unlink(p)
    ts=[threading.Thread(target=worker,args=(i,)) for i in range(nfiles)]
    [t.start() for t in ts]; [t.join() for t in ts]
    lat.sort(); n=len(lat)
    print(f"files={nfiles} prealloc={prealloc}: n={n} p50 {lat[n//2]*1e3:.3f} p99 {lat[int(n*.99)]*1e3:.3f} mean {statistics.mean(lat)*1e3:.3f} ms")
for a in [(1,False),(3,False),(1,True),(3,True),(3,False),(3,True)]:
    run(*a)
