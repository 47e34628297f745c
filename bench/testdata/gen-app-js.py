#!/usr/bin/env python3
# gen-app-js.py writes app.js, the compress test's 64 KiB "minified
# JavaScript": statements made of a Zipf-weighted pool of identifiers, so
# that it compresses like real bundles do (gzip -1: about 45%). Seeded:
# the same bytes each time. Run it in bench/testdata to remake app.js.
import random, string
random.seed(20261205)
kw = ["function","return","var","let","const","if","else","for","while","new","this","typeof","null","undefined","true","false","break","case","switch","try","catch","throw","in","of","instanceof","void","delete"]
props = ["length","push","call","apply","prototype","indexOf","slice","map","filter","forEach","createElement","appendChild","addEventListener","getAttribute","setAttribute","style","className","parentNode","nodeType","innerHTML","then","resolve","reject","value","toString","concat","join","split","replace","test","exec","keys","assign","defineProperty","hasOwnProperty"]
pool = []
for i in range(600):
    r = random.random()
    if r < 0.3: pool.append(random.choice(string.ascii_letters))
    elif r < 0.6: pool.append(random.choice(string.ascii_letters)+random.choice(string.ascii_letters+string.digits))
    else: pool.append(''.join(random.choice(string.ascii_letters) for _ in range(random.randint(3,10))))
weights = [1/(i+1)**0.9 for i in range(len(pool))]
def ident():
    return random.choices(pool, weights)[0]
def _unused():
    r = random.random()
    if r < 0.5: return random.choice(string.ascii_letters)
    if r < 0.8: return random.choice(string.ascii_letters)+random.choice(string.ascii_letters+string.digits)
    return ''.join(random.choice(string.ascii_letters) for _ in range(random.randint(3,9)))
def expr(d=0):
    r = random.random()
    if d>2 or r<0.25: return ident()
    if r<0.35: return str(random.randint(0,9999))
    if r<0.42: return '"'+''.join(random.choice(string.ascii_letters+" -_") for _ in range(random.randint(2,14)))+'"'
    if r<0.6: return ident()+"."+random.choice(props)+"("+",".join(expr(d+1) for _ in range(random.randint(0,3)))+")"
    if r<0.75: return expr(d+1)+random.choice(["+","-","*","===","!==","&&","||","<",">","?"+ident()+":"])+expr(d+1)
    if r<0.85: return "function("+",".join(ident() for _ in range(random.randint(0,3)))+"){"+stmt(d+1)+"}"
    return ident()+"["+expr(d+1)+"]"
def stmt(d=0):
    r = random.random()
    if d>3: return "return "+expr(d)+";"
    if r<0.3: return "var "+ident()+"="+expr(d)+";"
    if r<0.45: return "if("+expr(d)+"){"+stmt(d+1)+"}else{"+stmt(d+1)+"}"
    if r<0.55: return "for(var "+(i:=ident())+"=0;"+i+"<"+expr(d)+".length;"+i+"++){"+stmt(d+1)+"}"
    if r<0.75: return expr(d)+";"
    if r<0.85: return "return "+expr(d)+";"
    return random.choice(kw[:3])+" "+ident()+"="+expr(d)+";"
out = []
n = 0
while n < 65536:
    s = stmt()
    out.append(s); n += len(s)
data = ''.join(out)[:65535] + "\n"
open("app.js","w").write(data)
